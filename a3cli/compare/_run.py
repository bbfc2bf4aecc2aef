"""`a3 compare`: several targets (local checkpoints, OpenAI-compatible endpoints, Anthropic) measured on the run's
validation and OOD probes and the spec's suites, through `evaluate_checkpoint` (the one way a3 measures a model), in
one table.

    compare/<name>/result.json, samples.jsonl    each target's EvalResult and replies
    compare/comparison.json                      the table (CompareResult)
    compare/manifest.json                        the stage record (inputs, usage, outcomes)

Nothing here chooses anything: the rows are measurements. A target whose share of unscored probes exceeds
`gate.max_unscored` (its calls failed, or its replies went unjudged) is marked `infrastructure`; the command says so
and exits 3 after writing the table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from a3cli.compare._types import CompareResult, CompareRow
from a3cli.evaluate import SPLIT_FILES, evaluate_checkpoint
from a3cli.rundir import RunDir, model_identity, register_stage
from a3cli.spec import ModelRef, Spec
from a3cli.spec._models import CompareTarget
from a3cli.stages._common import as_run_dir

STAGE = "compare"
CODE_VERSION = "1"
TABLE = "comparison.json"
register_stage(STAGE, ("compare", "judges", "roles.judge", "suites", "capability"))


def check_targets(
    spec: Spec, targets: list[CompareTarget], cache: Any | None, out_dir: Path, spec_dir: Path | None = None
) -> list[str]:
    """The pre-flight checks for `a3 compare`, before any model loads: every target's key variable (and the LLM
    judge's), local models and adapters on disk and fitting each other, the spec's suites loadable, the cache
    readable, the folder writable."""
    from a3cli.llm import Cache
    from a3cli.llm._cache_repair import ensure_readable
    from a3cli.preflight import RoleUse, check_api_keys, check_writable, stage_roles
    from a3cli.preflight._check import check_local_model, check_suites

    uses = [RoleUse(f"compare.{t.name}", t.model, "is compared") for t in targets]
    uses += [u for u in stage_roles(spec, "eval") if u.path != "target"]
    check_api_keys(uses)
    notes: list[str] = []
    for use in uses:
        if use.ref.provider == "local":
            notes += check_local_model(spec, use)
    check_suites(spec, [STAGE], spec_dir)
    if isinstance(cache, Cache):
        ensure_readable(cache.path)
    check_writable(out_dir)
    return notes


def _row(name: str, ref: ModelRef, result: Any, quirks: list[str], rel: str, max_unscored: float) -> CompareRow:
    return CompareRow(
        name=name,
        model=model_identity(ref) or {},
        model_fingerprint=result.model_fingerprint,
        adapter_fingerprint=result.adapter_fingerprint,
        status="infrastructure" if result.unscored_share > max_unscored else "measured",
        validation=result.validation,
        ood=result.ood,
        suites=result.suites,
        capability=result.capability,
        unscored_share=result.unscored_share,
        usage=result.usage,
        wall_time_s=result.wall_time_s,
        quirks=quirks,
        target_errors=result.target_errors,
        result=rel,
        notes=result.notes,
    )


def run_compare(
    spec: Spec,
    run_dir: RunDir | str | os.PathLike[str],
    engine: Any,
    targets: list[CompareTarget],
    *,
    spec_dir: Path | None = None,
    capability: bool = False,
) -> CompareResult:
    """Measure every target on the run's validation and OOD probes and the spec's suites; write the table."""
    from a3cli.llm import unload_local_models
    from a3cli.suites import load_suite

    run = as_run_dir(spec, run_dir)
    inputs = [run.root / rel for rel in SPLIT_FILES.values()]
    with run.stage(STAGE, inputs=inputs, code_version=CODE_VERSION) as st:
        st.track_engine(engine)
        st.add_model("judge", spec.roles.judge)
        rows: list[CompareRow] = []
        notes: list[str] = []
        for t in targets:
            st.add_model(f"compare.{t.name}", t.model)
            local = t.model.provider == "local"
            folder = st.dir / t.name
            result = evaluate_checkpoint(
                spec, run, engine, target=t.model, capability=capability and local, out_dir=folder, spec_dir=spec_dir
            )
            unload_local_models()  # one local model at a time
            if capability and not local:
                notes.append(f"{t.name}: capability not measured (lm-eval runs on local weights; this target is {t.model.provider})")
            for name in ("result.json", "samples.jsonl"):
                st.track(folder / name)
            rows.append(_row(t.name, t.model, result, engine.quirks(t.model), run.rel(folder / "result.json"), spec.gate.max_unscored))
        failed = [r.name for r in rows if r.status == "infrastructure"]
        if failed:
            notes.append(
                f"{', '.join(failed)}: more than {spec.gate.max_unscored:.0%} of the probes unscored (failed calls or unjudged "
                "replies; see each row's target_errors): measured, but not comparable"
            )
        first = rows[0] if rows else None
        probes = {
            "validation": {"harmful": first.validation.n_harmful, "benign": first.validation.n_benign} if first else {},
            "ood": {"harmful": first.ood.n_harmful, "benign": first.ood.n_benign} if first else {},
            "suites": {s.name: {"kind": s.kind, "n": len(s.probes), "prompts_sha256": s.prompts_sha256}
                       for s in (load_suite(x, spec_dir) for x in spec.suites)},
        }
        table = CompareResult(run_id=run.run_id, probes=probes, rows=rows, notes=notes)
        st.write_json(TABLE, table.model_dump(mode="json"))
        st.counts.update(targets=len(rows), infrastructure=len(failed))
        st.notes += notes
    return table


def read_comparison(run_dir: RunDir | str | os.PathLike[str]) -> CompareResult:
    from a3cli._io import read_json

    root = run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)
    return CompareResult.model_validate(read_json(root / STAGE / TABLE))
