"""`run_defend`: the cheaper defences measured the same way as a fine-tune, into one comparison table.

Writes `defend/<method>/result.json` for each method run and `defend/table.json` with the undefended baseline and the
rows of every method whose result matches the current spec (methods run earlier stay in the table), plus the stage
manifest. The report and `a3 run`'s closing table read `defend/table.json`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from a3cli._io import read_json
from a3cli.defend._icl import run_icl
from a3cli.defend._inputs import DefendInputs, load_inputs
from a3cli.defend._library import SafetyLibrary
from a3cli.defend._mix import run_mix
from a3cli.defend._prompt import run_prompt
from a3cli.defend._select import RULE
from a3cli.defend._tokens import TokenCounter
from a3cli.defend._types import METHODS, AddedTokens, DefenceCost, DefenceRow, DefendResult, Method, MethodResult
from a3cli.errors import UsageError
from a3cli.judges import spec_judges
from a3cli.probes import Probe, SplitMetrics
from a3cli.rundir import RunDir, register_stage, stage_spec_hash
from a3cli.spec import Spec
from a3cli.stages._common import as_run_dir
from a3cli.stats import Rate

STAGE = "defend"
CODE_VERSION = "1"
TABLE = "table.json"
RESULT = "result.json"

register_stage(
    STAGE,
    ("target", "roles.agent", "roles.judge", "judges", "defenses", "training", "capability", "gate.max_capability_drop"),
)




def _baseline_split(inputs: DefendInputs, probes: list[Probe]) -> SplitMetrics:
    """The undefended target's rates on a split, from the baseline verdicts (no new model calls)."""
    harmful = [p for p in probes if p.kind == "harmful"]
    benign = [p for p in probes if p.kind == "benign"]
    h_rate, b_rate = inputs.baseline_rate(probes, "harmful"), inputs.baseline_rate(probes, "benign")
    return SplitMetrics(
        n_harmful=len(harmful),
        n_benign=len(benign),
        asr=h_rate,
        fpr=b_rate,
        unscored_harmful=len(harmful) - h_rate.n,
        unscored_benign=len(benign) - b_rate.n,
    )


def baseline_row(inputs: DefendInputs, capability: dict[str, Any] | None) -> DefenceRow:
    """Row 0 of the table: split/baseline.json when the split stage wrote it, else the per-probe baseline verdicts."""
    path = inputs.run.path("split", "baseline.json")
    data = read_json(path) if path.is_file() else {}
    splits: dict[str, SplitMetrics] = {}
    for name, probes in (("validation", inputs.validation), ("ood", inputs.ood)):
        raw = data.get(name) if isinstance(data, dict) else None
        splits[name] = SplitMetrics.model_validate(raw) if isinstance(raw, dict) else _baseline_split(inputs, probes)
    return DefenceRow(
        defence="baseline",
        method="baseline",
        detail="the undefended target (verdicts from `a3 generate`; no new model calls)",
        validation=splits["validation"],
        ood=splits["ood"],
        capability=capability,
        added_prompt_tokens=AddedTokens(per_request=0.0, method="none"),
        cost=DefenceCost(),
    )


def _load_result(path: Path) -> MethodResult | None:
    try:
        return MethodResult.model_validate(read_json(path))
    except (ValueError, OSError):
        return None


def run_defend(
    spec: Spec,
    run_dir: RunDir | str | os.PathLike[str],
    engine: Any,
    methods: Sequence[Method],
    *,
    spec_dir: Path | None = None,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
    library: SafetyLibrary | None = None,
    reflection_lm: Any | None = None,
    capability: bool = True,
) -> DefendResult:
    """Run the requested defences ("icl", "prompt", "mix") on the run's splits and write the comparison table.

    `embed` (texts -> unit vectors) replaces the sentence embedder for `nearest`; `library` the safety-prompt library;
    `reflection_lm` (a dspy LM) GEPA's reflection LM, which otherwise is the agent. `capability=False` skips the
    benchmarks of the fixed-mix checkpoints (e.g. for a quick look)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"defence methods must be among {', '.join(METHODS)} (got {', '.join(map(str, methods)) or 'none'})")
    run = as_run_dir(spec, run_dir)
    inputs = load_inputs(run, need_sft=any(m in ("icl", "mix") for m in methods))
    spec_hash = stage_spec_hash(spec, STAGE)
    ordered = [m for m in METHODS if m in methods]
    with run.stage(STAGE, inputs=inputs.input_files(), code_version=CODE_VERSION) as st:
        st.track_engine(engine)
        st.add_model("target", spec.target)
        st.add_model("judge", spec.roles.judge)
        st.add_model("agent", spec.roles.agent)
        judges = spec_judges(spec, engine)
        tokens = TokenCounter(spec.target) if ("icl" in ordered or "prompt" in ordered) else None
        produced: dict[str, MethodResult] = {}
        for method in ordered:
            if method == "icl":
                assert tokens is not None
                result = run_icl(spec, engine, inputs, judges=judges, tokens=tokens, embed=embed)
            elif method == "prompt":
                assert tokens is not None
                result = run_prompt(spec, engine, inputs, judges=judges, tokens=tokens, library=library, reflection_lm=reflection_lm)
            else:
                result = run_mix(spec, engine, inputs, spec_dir=spec_dir, capability=capability)
            result.spec_hash = spec_hash
            st.write_json(f"{method}/{RESULT}", result.model_dump(mode="json"))
            produced[method] = result
            st.counts[f"{method}_rows"] = len(result.rows)
            if result.skipped:
                st.notes.append(f"{method}: skipped: {result.skipped}")

        # The table: this run's methods plus earlier ones still matching the spec.
        notes = list(inputs.notes)
        all_results: dict[str, MethodResult] = {}
        for method in METHODS:
            if method in produced:
                all_results[method] = produced[method]
                continue
            path = run.path(STAGE, f"{method}/{RESULT}")
            if not path.is_file():
                continue
            old = _load_result(path)
            if old is None or old.spec_hash != spec_hash:
                notes.append(f"defend/{method}/{RESULT} is from an older spec or unreadable; left out of the table (re-run --method {method})")
                continue
            all_results[method] = old
        mix = all_results.get("mix")
        rows = [baseline_row(inputs, mix.baseline_capability if mix else None)]
        for method in METHODS:
            if method in all_results:
                rows += all_results[method].rows
                if all_results[method].skipped:
                    notes.append(f"{method}: {all_results[method].skipped}")
        table = DefendResult(run_id=run.run_id, rows=rows, methods=produced, selection_rule=RULE, notes=notes)
        st.write_json(TABLE, table.model_dump(mode="json", exclude={"methods"}))
        st.counts["table_rows"] = len(rows)
    return table


def read_table(run_dir: RunDir | str | os.PathLike[str]) -> DefendResult:
    """`defend/table.json` of a run directory."""
    root = run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)
    return DefendResult.model_validate(read_json(root / STAGE / TABLE))


def render_rate(rate: Rate) -> str:
    """Compact form for tables: rate (k/n); the Wilson interval is in table.json."""
    return "n/a" if rate.rate is None else f"{rate.rate:.0%} ({rate.k}/{rate.n})"
