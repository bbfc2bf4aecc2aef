"""The checks every command that runs models makes first, in seconds, before any model loads: the API keys of every
role it will call, the local models and adapters it names (and that they fit each other), the cache, the run folder,
and whether the seed fits the target's context window. Each failure is one sentence with the right exit code:
2 for what the user named wrongly (a model path that does not exist, an adapter for another base, a seed too long),
3 for this machine's state (a key not exported, the Hub unreachable, a damaged cache, a folder not writable)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from a3cli.errors import InfrastructureError, MissingDependencyError
from a3cli.preflight._context import check_seed_fits
from a3cli.preflight._roles import RoleUse, roles_for
from a3cli.spec import ModelRef, Spec

_SDK = {"openai": "openai", "anthropic": "anthropic"}


class PreflightError(InfrastructureError):
    """Something on this machine keeps the command from running (exit 3); raised before any model loads."""


def pending_stages(run: object, stages: Sequence[str]) -> list[str]:
    """The stages of `stages` that will do work: from the first one not complete for this spec onwards (a stage after
    a re-run one runs again when its inputs change, so everything after the first pending stage counts)."""
    from a3cli.rundir import RunDir, stage_spec_hash

    assert isinstance(run, RunDir)
    out: list[str] = []
    for stage in stages:
        if not out:
            try:
                m = run.manifest(stage)
            except Exception:  # noqa: BLE001 - an unreadable manifest means the stage will run (and report it)
                m = None
            if m is not None and m.status == "complete" and m.spec_hash == stage_spec_hash(run.spec, stage):
                continue
        out.append(stage)
    return out


def check_api_keys(uses: Sequence[RoleUse]) -> None:
    """Every remote role's SDK is installed and its key variable is set; all missing keys named in one message."""
    from a3cli.llm._secrets import MissingAPIKeyError, api_key

    missing = []
    for use in uses:
        module = _SDK.get(use.ref.provider)
        if module is None:
            continue
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, f"{use.path} (provider {use.ref.provider})")
        try:
            api_key(use.ref)
        except MissingAPIKeyError as e:
            missing.append(f"{use.path} ({use.ref.provider} model {use.ref.model!r}, which {use.purpose}) reads its API key from {e.env}, which is not set")
    if missing:
        raise PreflightError(
            "; ".join(missing) + ". Export the variable (export NAME=...) or point `api_key_env` at the one that holds "
            "the key. Nothing was run"
        )


def check_local_model(spec: Spec, use: RoleUse) -> list[str]:
    """A local model (and its adapter) exist, fit each other, and the seed fits the target's window. Nothing is
    downloaded, converted or loaded: what is not on disk yet is left to the loader."""
    from a3cli.assets import ModelNotFoundError, ModelUnavailableError, check_adapter_fits, locate_local_model

    ref = use.ref

    def locate(field: str, name: str, revision: str | None = None) -> Path | None:
        try:
            return locate_local_model(name, revision=revision)
        except (ModelNotFoundError, ModelUnavailableError) as e:
            raise type(e)(f"{use.path}.{field}: {e}") from None

    folder = locate("model", ref.model, ref.revision)
    notes: list[str] = []
    if ref.adapter:
        adapter = locate("adapter", ref.adapter)
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{use.path}.adapter: {adapter} is not a LoRA adapter folder (no adapter_config.json)")
        if adapter is not None and folder is not None:
            notes += check_adapter_fits(folder, adapter, base_label=ref.model)
    if use.path == "target" and folder is not None:
        check_seed_fits(spec, folder, ref.model)
    return notes


def check_writable(folder: Path) -> None:
    """`folder` can be created and written (a test file is made and removed)."""
    from a3cli._crashlog import describe_exception

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".a3-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PreflightError(f"cannot write the output folder {folder}: {describe_exception(e)}") from None


# The stages that measure the spec's external suites (train: the baseline and every candidate; eval: the checkpoint;
# compare: every target). `a3 defend` checks them itself when its fixed mix (measured like eval) will run.
SUITE_STAGES = frozenset({"train", "eval", "compare"})


def check_suites(spec: Spec, stages: Sequence[str], spec_dir: Path | None) -> None:
    """Every suite the stages will measure loads (a missing file or column is exit 2, an unreachable Hub dataset
    exit 3), now rather than after models have loaded; loading is cached in-process, so nothing is read twice."""
    if not spec.suites or not SUITE_STAGES & set(stages):
        return
    from a3cli.suites import load_suite

    for suite in spec.suites:
        load_suite(suite, spec_dir)


def preflight(
    spec: Spec,
    stages: Sequence[str],
    *,
    cache: object | None = None,
    target: ModelRef | None = None,
    out_dir: Path | None = None,
    spec_dir: Path | None = None,
) -> list[str]:
    """Run every check for a command that runs `stages`; raise the first failure, return notes worth printing.

    `cache` is the engine's Cache (None under --no-cache), `target` replaces the spec's target (eval's --model and
    --adapter), `out_dir` is a folder the command writes outside a run folder (opened run folders are checked when
    opened), `spec_dir` the folder relative suite paths are read from."""
    from a3cli.llm import Cache
    from a3cli.llm._cache_repair import ensure_readable

    uses = roles_for(spec, stages, target=target)
    if spec.redteam.load_in_4bit and ("redteam" in stages or "loops" in stages):
        from a3cli.preflight._quantisation import check_4bit

        check_4bit("redteam.load_in_4bit")
    check_api_keys(uses)
    notes: list[str] = []
    for use in uses:
        if use.ref.provider == "local":
            notes += check_local_model(spec, use)
    check_suites(spec, stages, spec_dir)
    if isinstance(cache, Cache):
        ensure_readable(cache.path)
    if out_dir is not None:
        check_writable(out_dir)
    return notes
