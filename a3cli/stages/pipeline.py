"""`a3 run`: generate -> split -> expect -> train -> eval in one command, each stage skipped when its outputs are
current, so a second run (or a run after a crash) redoes only what is missing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from a3cli._io import read_json, write_json
from a3cli.errors import UsageError
from a3cli.llm import Engine, outcome_line
from a3cli.rundir import RunDir, StageManifest, register_stage

Stage = Literal["generate", "split", "expect", "train", "eval"]
STAGES: tuple[Stage, ...] = ("generate", "split", "expect", "train", "eval")

EVAL_STAGE = "eval"
EVAL_CODE_VERSION = "1"
register_stage(EVAL_STAGE, ("gate", "suites"))


class StageReport(BaseModel):
    stage: str
    status: Literal["ran", "current", "not run"]
    wall_time_s: float = 0.0
    model_calls: int = Field(0, description="Calls that reached a model (cache misses) in this invocation.")
    notes: list[str] = Field(default_factory=list)


class PipelineReport(BaseModel):
    run_dir: str
    stages: list[StageReport]
    wall_time_s: float
    model_calls: int
    gate_status: str | None = None
    gate_exit_code: int | None = None


def _live_calls(engine: Engine) -> int:
    """Calls that reached a model (the engine counts cache hits apart, in `cached`)."""
    return engine.usage.total.calls


def stage_range(from_stage: str | None, until_stage: str | None) -> list[Stage]:
    for name in (from_stage, until_stage):
        if name is not None and name not in STAGES:
            raise UsageError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")
    start = STAGES.index(from_stage) if from_stage else 0  # type: ignore[arg-type]
    stop = STAGES.index(until_stage) if until_stage else len(STAGES) - 1  # type: ignore[arg-type]
    if start > stop:
        raise UsageError(f"--from {from_stage} comes after --until {until_stage}")
    return list(STAGES[start : stop + 1])


def run_eval_stage(run: RunDir) -> StageManifest:
    """Gate the chosen checkpoint (its evaluation was done by `train`) against the spec's gate, baseline = the base model."""
    from a3cli.evaluate import EvalResult, apply_gate, junit_xml, markdown_summary

    best_path = run.path("train", "best.json")
    baseline_path = run.path("train", "baseline/result.json")
    if not best_path.exists():
        raise UsageError("no chosen checkpoint yet (train/best.json): run `a3 train` first")
    best = read_json(best_path)
    chosen_path = run.root / best["result"]
    inputs = list(dict.fromkeys([best_path, baseline_path, chosen_path]))
    if run.is_current(EVAL_STAGE, inputs=inputs, code_version=EVAL_CODE_VERSION):
        manifest = run.manifest(EVAL_STAGE)
        assert manifest is not None
        return manifest
    with run.stage(EVAL_STAGE, inputs=inputs, code_version=EVAL_CODE_VERSION) as st:
        baseline = EvalResult.model_validate(read_json(baseline_path))
        chosen = EvalResult.model_validate(read_json(chosen_path))
        gate = apply_gate(chosen, run.spec.gate, baseline, baseline_source="train/baseline/result.json", suites=run.spec.suites)
        st.write_json("gate.json", gate.model_dump(mode="json"))
        st.write_text("junit.xml", junit_xml(gate))
        st.write_text("summary.md", markdown_summary(gate, chosen))
        st.counts.update(gate=gate.status, chosen=best["iteration"])
        st.notes.append(gate.summary)
    return st.manifest


def run_pipeline(
    spec_path: Path,
    run: RunDir,
    engine: Engine,
    stages: list[Stage],
    *,
    force: bool = False,
    announce: Callable[[str], None] = print,
) -> PipelineReport:
    """Run `stages` in order. `force` re-runs the first of them even when current (later ones follow by their inputs)."""
    from a3cli.stages import run_expect, run_generate, run_split
    from a3cli.stages.train import run_train

    spec = run.spec
    spec_dir = spec_path.parent
    started = time.monotonic()
    calls_at_start = _live_calls(engine)
    runners: dict[str, Callable[[], StageManifest]] = {
        "generate": lambda: run_generate(spec, run, engine),
        "split": lambda: run_split(spec, run, engine),
        "expect": lambda: run_expect(spec, run, engine),
        "train": lambda: run_train(spec, run, engine, spec_dir=spec_dir),
        "eval": lambda: run_eval_stage(run),
    }
    if force and stages:
        manifest = run.manifest_path(stages[0])
        if manifest.exists():
            manifest.unlink()  # outputs stay; the stage re-checks and rewrites them (train archives its own)
    reports: list[StageReport] = []
    for name in stages:
        before_manifest = run.manifest(name)
        t0 = time.monotonic()
        calls0 = _live_calls(engine)
        announce(f"▶ {name}")
        manifest = runners[name]()
        ran = before_manifest != manifest
        report = StageReport(
            stage=name,
            status="ran" if ran else "current",
            wall_time_s=round(time.monotonic() - t0, 2),
            model_calls=_live_calls(engine) - calls0,
            notes=manifest.notes[-3:],
        )
        reports.append(report)
        announce(f"  {name}: {'done' if ran else 'current, skipped'} in {report.wall_time_s:.1f}s, {report.model_calls} model calls")
        if ran:
            announce(f"  {name} {outcome_line(manifest.outcomes)}")
    gate_status = gate_code = None
    gate_path = run.path(EVAL_STAGE, "gate.json")
    if "eval" in stages and gate_path.exists():
        gate = read_json(gate_path)
        gate_status, gate_code = gate["status"], gate["exit_code"]
    report = PipelineReport(
        run_dir=str(run.root),
        stages=reports,
        wall_time_s=round(time.monotonic() - started, 2),
        model_calls=_live_calls(engine) - calls_at_start,
        gate_status=gate_status,
        gate_exit_code=gate_code,
    )
    write_json(run.root / "pipeline.json", report.model_dump(mode="json"))
    return report


# ------------------------------------------------------------------------------------------------------ closing table


def _fmt_rate(rate: Any) -> str:
    if rate is None or rate.get("rate") is None:
        return "n/a"
    return f"{rate['rate']:.1%} [{rate['low']:.0%}, {rate['high']:.0%}]"


def _suite_rate(suite: dict[str, Any]) -> Any:
    metrics = suite.get("metrics") or {}
    return metrics.get("asr") if suite.get("kind") == "harmful" else metrics.get("fpr")


def closing_rows(run: RunDir) -> list[dict[str, str]]:
    """Baseline vs chosen checkpoint (and one row per defence), as display strings: validation (what the choice read),
    then the held-out OOD split and the external suites (reported, never read to choose), then capability."""
    rows: list[dict[str, str]] = []
    suite_columns: dict[str, str] = {}  # suite name -> column title, in the spec's order

    def add(name: str, result: dict[str, Any]) -> None:
        cap = result.get("capability") or {}
        cap_text = ", ".join(f"{t} {v['accuracy']:.1%}" + (f"±{v['stderr']:.1%}" if v.get("stderr") is not None else "") for t, v in cap.items())
        suites = result.get("suites") or {}
        for s_name, s in suites.items():
            suite_columns.setdefault(s_name, f"{'ASR' if s.get('kind') == 'harmful' else 'over-refusal'} {s_name}")
        row = {
            "model": name,
            "ASR val": _fmt_rate(result["validation"]["asr"]),
            "FPR val": _fmt_rate(result["validation"]["fpr"]),
            "ASR OOD": _fmt_rate(result["ood"]["asr"]),
            "FPR OOD": _fmt_rate(result["ood"]["fpr"]),
        }
        row |= {title: _fmt_rate(_suite_rate(suites[s])) if s in suites else "n/a" for s, title in suite_columns.items()}
        rows.append({**row, "capability": cap_text or "n/a"})

    baseline = run.path("train", "baseline/result.json")
    if baseline.exists():
        add("baseline", read_json(baseline))
    best_path = run.path("train", "best.json")
    if best_path.exists():
        best = read_json(best_path)
        if best["iteration"] != "baseline":
            add(f"chosen: iteration {best['iteration']}", read_json(run.root / best["result"]))
    loops = run.root / "loops" / "summary.json"
    if loops.exists():  # `a3 run --loops`: each loop's retrained checkpoint, measured on the same held-out probes
        for row in read_json(loops).get("loops", []):
            if row["loop"] > 0 and not row.get("stopped") and row.get("result"):
                add(f"hardened: {row['checkpoint']}", read_json(run.root / row["result"]))
    table = run.path("defend", "table.json")
    if table.exists():
        for row in read_json(table).get("rows", []):
            add(f"defence: {row.get('defence')} {row.get('detail', '')}".strip(), row)
    # Rows added before a suite column appeared get "n/a" in it; every row shows the same columns in the same order.
    order = ["model", "ASR val", "FPR val", "ASR OOD", "FPR OOD", *suite_columns.values(), "capability"]
    return [{c: r.get(c, "n/a") for c in order} for r in rows]


def gate_rows(run: RunDir) -> list[dict[str, str]]:
    """The gate's checks on the chosen checkpoint: pass / fail / inconclusive (the 95 % interval straddles the limit)
    / error / skipped, with what was measured and the limit."""
    path = run.path(EVAL_STAGE, "gate.json")
    if not path.exists():
        return []
    gate = read_json(path)
    strict = bool((gate.get("gate") or {}).get("strict"))
    rows = []
    for c in gate.get("criteria") or []:
        capability = str(c.get("name", "")).startswith("capability")

        def num(x: Any, capability: bool = capability) -> str:
            return "–" if x is None else f"{x * 100:+.1f} pts" if capability else f"{x:.1%}"

        measured = num(c.get("measured"))
        if c.get("low") is not None and c.get("high") is not None:
            measured += f" [{num(c['low'])}, {num(c['high'])}]"
        status = str(c.get("status"))
        if status == "inconclusive":
            fails = strict or not c.get("point_pass")
            status += " (fails the gate)" if fails else " (point estimate within)"
        rows.append({"check": str(c.get("title")), "status": status, "measured": measured, "limit": num(c.get("threshold"))})
    return rows


def stage_costs(run: RunDir) -> list[dict[str, str]]:
    out = []
    for name in STAGES:
        m = run.manifest(name)
        if m is None:
            continue
        tokens = sum(u.input_tokens + u.output_tokens for u in m.usage.values())
        calls = sum(u.calls for u in m.usage.values())
        cost = f"${m.cost_usd:.4f}" if m.cost_usd is not None else "$0"
        out.append({"stage": name, "status": m.status, "wall time": f"{m.wall_time_s:.1f}s", "calls": str(calls), "tokens": str(tokens), "cost": cost})
    return out
