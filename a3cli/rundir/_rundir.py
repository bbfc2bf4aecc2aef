"""`runs/<spec key>/<run id>/`: every stage's files plus a manifest per stage, so finished stages are skipped on re-runs.

Re-running after a crash is safe: a stage marks its manifest `running` before touching outputs and `complete` only
after all of them are written (each one atomically), so a half-finished stage is never mistaken for a current one.
Model calls are not repeated because the LLM cache answers them; the manifests only decide which files to trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self

from a3cli import __version__
from a3cli._io import atomic_write_text, read_json, write_json, write_jsonl
from a3cli.errors import A3Error, InfrastructureError
from a3cli.rundir._hardware import machine
from a3cli.rundir._manifest import RoleUsage, StageManifest
from a3cli.spec import ModelRef, Spec, spec_hash

MANIFEST = "manifest.json"
SPEC_FILE = "spec.json"
DEFAULT_RUNS_ROOT = "runs"

# The spec sections each stage reads. A stage is stale when one of these changes, and only then: editing the gate does
# not regenerate probes. Stages not listed here hash the whole spec (safe, if over-eager).
STAGE_SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "generate": ("attack", "seed", "target", "roles.generator", "roles.judge", "judges", "probes", "generation"),
    "split": ("split", "roles.generator", "attack.description"),
    "expect": (
        "expected", "roles.expected", "judges.harmful", "judges.refusal", "roles.judge",
        "training.topic_swaps", "training.benign_topic_swaps", "training.benign_swap_pool", "training.seed",
    ),
}

_PACKAGES_OF_NOTE = ("pydantic", "torch", "transformers", "peft", "sentence-transformers", "openai", "anthropic")


class RunDirError(A3Error):
    """A run directory that cannot be used (e.g. an unreadable manifest)."""


class RunFolderError(InfrastructureError):
    """The run folder cannot be created or written (permissions, a read-only or full disk)."""

    def __init__(self, root: Path, e: OSError):
        from a3cli._crashlog import describe_exception

        super().__init__(f"cannot write the run folder {root}: {describe_exception(e)}")


def register_stage(stage: str, spec_fields: Sequence[str]) -> None:
    """Declare which spec sections (dotted paths) a stage reads, so edits elsewhere leave it current."""
    STAGE_SPEC_FIELDS[stage] = tuple(spec_fields)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stage_spec_hash(spec: Spec, stage: str) -> str:
    """sha256 of the spec sections `stage` reads (the whole spec for unregistered stages)."""
    fields = STAGE_SPEC_FIELDS.get(stage)
    if fields is None:
        return spec_hash(spec)
    return spec_fields_hash(spec, fields)


def spec_fields_hash(spec: Spec, fields: Sequence[str]) -> str:
    """sha256 of the given spec sections (dotted paths)."""
    data = spec.model_dump(mode="json")
    picked: dict[str, Any] = {}
    for dotted in fields:
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        picked[dotted] = node
    return hashlib.sha256(_canonical(picked).encode()).hexdigest()


# Gate fields only the eval stage reads: tightening a threshold re-gates the same run instead of starting a new one.
_GATE_ONLY_FIELDS = ("max_asr", "max_fpr", "relative_to_baseline", "max_unscored", "strict")


def default_run_id(spec: Spec) -> str:
    """A short hash of the spec, so `a3 run` on an unchanged spec reuses its run directory. The gate's thresholds, the
    external suites and the compared targets are left out (the stages that measure or gate them re-run in place when they change); the
    capability tolerance is in, since training's checkpoint choice reads it."""
    data = spec.model_dump(mode="json")
    data["gate"] = {k: v for k, v in data["gate"].items() if k not in _GATE_ONLY_FIELDS}
    data.pop("suites", None)  # measured, never trained on: adding one re-measures the same run
    data.pop("compare", None)  # other models measured on this run's probes: they change nothing the run made
    return hashlib.sha256(_canonical(data).encode()).hexdigest()[:12]


def public_url(url: str | None) -> str | None:
    """The endpoint without credentials or query (a URL may carry `user:key@` or `?api_key=`)."""
    if url is None:
        return None
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def model_identity(ref: ModelRef | None) -> dict[str, Any] | None:
    """What identifies a model's behaviour (provider, model, endpoint, revision, weights, adapter, sampling); no keys,
    no credentials from the URL."""
    if ref is None:
        return None
    ident = {
        "provider": ref.provider,
        "model": ref.model,
        "base_url": public_url(ref.base_url),
        "revision": ref.revision,
        "adapter": ref.adapter,
        "generate": ref.generate.model_dump(mode="json"),
    }
    if ref.weights is not None:
        ident["weights"] = ref.weights
    return ident


def tool_versions() -> dict[str, str]:
    out = {"a3": __version__, "python": platform.python_version()}
    for name in _PACKAGES_OF_NOTE:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class RunDir:
    """One run's folder. Stages read and write only inside it (plus the LLM cache)."""

    def __init__(self, root: str | os.PathLike[str], spec: Spec):
        self.root = Path(root)
        self.spec = spec

    @classmethod
    def open(cls, spec: Spec, *, runs_root: str | os.PathLike[str] = DEFAULT_RUNS_ROOT, run_id: str | None = None) -> RunDir:
        """`<runs_root>/<attack.key>/<run_id>/`, created if needed, with the spec written into it."""
        rid = run_id or default_run_id(spec)
        if not rid or "/" in rid or "\\" in rid or rid in (".", ".."):
            raise RunDirError(f"run id {rid!r} must be a plain folder name")
        run = cls(Path(runs_root) / spec.attack.key / rid, spec)
        run.prepare()
        return run

    def prepare(self) -> None:
        """Create the folder and write the spec into it; a folder that cannot be written is one sentence, exit 3."""
        from a3cli._crashlog import note_run_dir

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.write_spec()
            probe = self.root / f".a3-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunFolderError(self.root, e) from None
        note_run_dir(self.root)

    @property
    def run_id(self) -> str:
        return self.root.name

    def write_spec(self) -> None:
        text = json.dumps(self.spec.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        path = self.root / SPEC_FILE
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)

    # ------------------------------------------------------------------------------------------------------ paths

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def path(self, stage: str, name: str) -> Path:
        return self.stage_dir(stage) / name

    def manifest_path(self, stage: str) -> Path:
        return self.path(stage, MANIFEST)

    def rel(self, path: str | os.PathLike[str]) -> str:
        """Run-dir files as relative POSIX paths; anything outside (an imported file) as an absolute path."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    def resolve(self, key: str) -> Path:
        p = Path(key)
        return p if p.is_absolute() else self.root / p

    # ------------------------------------------------------------------------------------------------------ manifests

    def manifest(self, stage: str) -> StageManifest | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        try:
            return StageManifest.model_validate(read_json(path))
        except (ValueError, OSError):
            raise RunDirError(
                f"{path}: unreadable manifest (damaged, or not written by this version of a3); delete the folder "
                f"{path.parent} to redo the stage"
            ) from None

    def write_manifest(self, manifest: StageManifest) -> None:
        write_json(self.manifest_path(manifest.stage), manifest.model_dump(mode="json"))

    def is_current(self, stage: str, *, inputs: Iterable[str | os.PathLike[str]] | None = None, code_version: str | None = None) -> bool:
        """True when `stage` finished and nothing it depends on changed: its spec sections, its code version (when
        given), the content of every input it recorded (and, when `inputs` is given, the same set of inputs), and
        every output is still on disk unchanged."""
        m = self.manifest(stage)
        if m is None or m.status != "complete":
            return False
        if m.spec_hash != stage_spec_hash(self.spec, stage):
            return False
        if code_version is not None and m.code_version != code_version:
            return False
        if inputs is not None and {self.rel(p) for p in inputs} != set(m.inputs):
            return False
        for key, digest in {**m.inputs, **m.outputs}.items():
            path = self.resolve(key)
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True

    def stage(self, stage: str, *, inputs: Iterable[str | os.PathLike[str]] = (), code_version: str = "1") -> StageRecorder:
        """Context manager that records one execution of `stage` (see StageRecorder)."""
        return StageRecorder(self, stage, inputs=list(inputs), code_version=code_version)


class StageRecorder:
    """Records one stage execution. On entry the manifest says `running`; on a clean exit `complete` with output
    hashes; on an exception `failed` with the error type and message (the exception is re-raised).

        with run.stage("split", inputs=[...], code_version="2") as st:
            st.write_jsonl("train.jsonl", rows)
            st.counts["train"] = len(rows)
    """

    def __init__(self, run: RunDir, stage: str, *, inputs: list[str | os.PathLike[str]], code_version: str):
        self.run = run
        self.stage = stage
        self.dir = run.stage_dir(stage)
        self.inputs = inputs
        self.code_version = code_version
        self.counts: dict[str, Any] = {}
        self.usage: dict[str, RoleUsage] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.precision: dict[str, str] = {}
        self.notes: list[str] = []
        self.outputs: list[Path] = []
        self._t0 = 0.0
        self._engines: list[tuple[Any, Any]] = []
        self._outcome_engines: list[tuple[Any, Any]] = []
        self._manifest: StageManifest | None = None

    # ------------------------------------------------------------------------------------------------------ outputs

    def path(self, name: str) -> Path:
        return self.dir / name

    def track(self, path: Path) -> Path:
        """Record a file written by other means (e.g. by a helper) as an output of this stage."""
        if path not in self.outputs:
            self.outputs.append(path)
        return path


    def write_jsonl(self, name: str, rows: Iterable[Any]) -> Path:
        path = self.path(name)
        write_jsonl(path, rows)
        return self.track(path)

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.path(name)
        write_json(path, obj)
        return self.track(path)

    def write_text(self, name: str, text: str) -> Path:
        path = self.path(name)
        atomic_write_text(path, text)
        return self.track(path)

    # ------------------------------------------------------------------------------------------------------ accounting

    def add_model(self, role: str, ref: ModelRef | None) -> None:
        ident = model_identity(ref)
        if ident is not None:
            self.models[role] = ident
        if ref is not None and ref.provider == "local":
            from a3cli.assets import pick_device, pick_dtype

            self.precision[role] = str(pick_dtype(ref.dtype, pick_device(ref.device))).removeprefix("torch.")

    def track_engine(self, engine: Any) -> None:
        """Charge this stage with the engine's usage from now until the stage ends (per role: calls, cache hits,
        errors, tokens, estimated cost). Engines without a `usage` report are ignored."""
        report = getattr(engine, "usage", None)
        if report is not None:
            self._engines.append((engine, report))
        self.track_outcomes(engine)

    def track_outcomes(self, engine: Any) -> None:
        """Record in the manifest the engine's per-role re-asks, fallbacks and unusable answers from now until the
        stage ends (a stage that accounts usage itself calls this alone)."""
        meter = getattr(engine, "outcomes", None)
        if meter is not None and all(e is not engine for e, _ in self._outcome_engines):
            self._outcome_engines.append((engine, meter.snapshot()))

    def _engine_outcomes(self) -> dict[str, Any]:
        from a3cli.llm._outcomes import outcomes_since

        merged: dict[str, Any] = {}
        for engine, before in self._outcome_engines:
            merged.update(outcomes_since(before, engine.outcomes.snapshot()))
        return merged

    def _engine_usage(self) -> None:
        names = ("calls", "cached", "errors", "input_tokens", "output_tokens")
        for engine, before in self._engines:
            for role, now in engine.usage.by_role.items():
                was = before.by_role.get(role)
                delta = {n: getattr(now, n) - (getattr(was, n) if was else 0) for n in names}
                cost = float(now.cost_usd) - (float(was.cost_usd) if was else 0.0)
                if not any(delta.values()) and not cost:
                    continue
                u = self.usage.setdefault(role, RoleUsage())
                for n, d in delta.items():
                    setattr(u, n, getattr(u, n) + d)
                u.cost_usd = round((u.cost_usd or 0.0) + cost, 6)

    def record_usage(self, role: str, responses: Iterable[Any]) -> None:
        """Add engine Responses (objects with `cached`, `error`, `usage`, optional `cost_usd`) to a role's usage."""
        u = self.usage.setdefault(role, RoleUsage())
        for r in responses:
            u.calls += 1
            if getattr(r, "cached", False):
                u.cached += 1
                continue  # a cache hit costs no tokens
            if getattr(r, "error", None) is not None:
                u.errors += 1
            usage = getattr(r, "usage", None)
            if usage is not None:
                u.input_tokens += int(getattr(usage, "input_tokens", 0) or 0)
                u.output_tokens += int(getattr(usage, "output_tokens", 0) or 0)
            cost = getattr(r, "cost_usd", None)
            if cost is not None:
                u.cost_usd = (u.cost_usd or 0.0) + float(cost)

    # ------------------------------------------------------------------------------------------------------ lifecycle

    def _base(self, status: str) -> StageManifest:
        spec = self.run.spec
        return StageManifest(
            stage=self.stage,
            status=status,  # type: ignore[arg-type]
            run_id=self.run.run_id,
            spec_hash=stage_spec_hash(spec, self.stage),
            full_spec_hash=spec_hash(spec),
            code_version=self.code_version,
            inputs={self.run.rel(p): sha256_file(p) for p in self.inputs},
            tool_versions=tool_versions(),
            hardware=machine(),
            started_at=_now(),
        )

    def __enter__(self) -> Self:
        self._t0 = time.monotonic()
        missing = [str(p) for p in self.inputs if not Path(p).is_file()]
        if missing:
            raise RunDirError(f"stage `{self.stage}` needs {', '.join(missing)}; run the earlier stage first")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._manifest = self._base("running")
        self.run.write_manifest(self._manifest)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._manifest is not None
        m = self._manifest
        m.wall_time_s = round(time.monotonic() - self._t0, 3)
        m.finished_at = _now()
        self._engine_usage()
        m.counts = self.counts
        m.usage = self.usage
        m.outcomes = self._engine_outcomes()
        m.models = self.models
        m.precision = self.precision
        m.notes = self.notes
        costs = [u.cost_usd for u in self.usage.values() if u.cost_usd is not None]
        m.cost_usd = round(sum(costs), 6) if costs else None
        if exc is None:
            m.status = "complete"
            m.outputs = {self.run.rel(p): sha256_file(p) for p in self.outputs}
        else:
            m.status = "failed"
            # The type and message only: stage errors never carry secrets (CallError messages are scrubbed upstream).
            if isinstance(exc, A3Error):
                m.error = str(exc)[:2000]
            else:
                from a3cli._crashlog import describe_exception

                m.error = describe_exception(exc)[:2000]
        self.run.write_manifest(m)
        self.manifest = m

    manifest: StageManifest
