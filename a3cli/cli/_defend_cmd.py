"""`a3 defend`: the cheaper defences (in-context examples, an optimised safety prompt, fixed-mix fine-tunes) measured
like a fine-tune, printed as one table and written to <run>/defend/table.json."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from a3cli.cli._app import app
from a3cli.spec import load_spec

if TYPE_CHECKING:
    from a3cli.defend import DefendResult, SearchCost


class DefendMethod(str, Enum):
    icl = "icl"
    prompt = "prompt"
    mix = "mix"
    all = "all"


def _table(result: DefendResult) -> Table:
    from a3cli.defend import render_rate

    t = Table(title="Is fine-tuning worth it? Defences on the held-out splits")
    t.add_column("defence", no_wrap=True)
    # A suite column each, as in the report (measured on the fixed mix's checkpoints; "-" where a defence measured none).
    suites = {name: s.measure for row in result.rows for name, s in row.suites.items()}
    for col in ("val ASR", "val FPR", "OOD ASR", "OOD FPR", *(f"{n} {m}" for n, m in suites.items()), "capability", "+tok/req", "cost"):
        t.add_column(col, overflow="fold")
    for row in result.rows:
        cap = "-" if not row.capability else ", ".join(f"{k} {v.accuracy:.1%}" for k, v in row.capability.items())
        tokens = "-" if row.added_prompt_tokens.method == "none" else (
            f"{row.added_prompt_tokens.per_request:.0f}" + ("" if row.added_prompt_tokens.method == "tokenizer" else " (est.)")
        )
        usage = row.cost.usage.total
        cost = []
        if usage.calls or usage.cached:
            cost.append(f"{usage.calls} calls" + (f" (+{usage.cached} cached)" if usage.cached else ""))
        if usage.input_tokens or usage.output_tokens:
            cost.append(f"{usage.input_tokens + usage.output_tokens:,} tokens")
        if usage.cost_usd:
            cost.append(f"${usage.cost_usd:.4f}")
        if row.cost.wall_time_s:
            cost.append(f"{row.cost.wall_time_s:.0f} s")
        t.add_row(
            row.defence,
            render_rate(row.validation.asr),
            render_rate(row.validation.fpr),
            render_rate(row.ood.asr),
            render_rate(row.ood.fpr),
            *(render_rate(row.suites[n].rate) if n in row.suites else "-" for n in suites),
            cap,
            tokens,
            ", ".join(cost) or "-",
        )
    return t


def search_line(s: SearchCost) -> str:
    """One line for a prompt optimiser's own cost: metric calls of its budget, examples, model calls, tokens, time."""
    total = s.usage.total
    used = "?" if s.metric_calls is None else f"{s.metric_calls:,}"
    allowed = "" if s.budget_metric_calls is None else f" of {s.budget_metric_calls:,}"
    cost = f", ${total.cost_usd:.4f}" if total.cost_usd else ""
    return (
        f"{s.optimizer}, {used}{allowed} metric calls ({s.budget}); {s.train_examples} training probes, valset "
        f"{s.val_examples} validation probes; {total.calls} model calls (+{total.cached} cached), "
        f"{total.input_tokens + total.output_tokens:,} tokens{cost}, {s.wall_time_s:.0f} s"
    )


@app.command("defend")
def defend(
    spec: Path = typer.Argument(..., help="The attack spec (YAML); its `defenses` block configures the methods."),
    method: DefendMethod = typer.Option(DefendMethod.all, "--method", case_sensitive=False, help="Which defence to run: icl, prompt, mix or all."),
    run: Path | None = typer.Option(None, "--run", help="Run directory with split/ and expect/. Default: runs/<attack key>/<spec hash>."),
    no_capability: bool = typer.Option(False, "--no-capability", help="Skip the capability benchmarks of the fixed-mix checkpoints."),
) -> None:
    """Cheaper alternatives to fine-tuning, in one table: in-context examples, an optimised safety system prompt, and
    fixed harmful:benign data mixes; each measured on validation and OOD with its added prompt tokens and its cost."""
    from a3cli.defend import METHODS, run_defend
    from a3cli.llm import Engine, outcome_line, outcomes_since
    from a3cli.preflight import preflight
    from a3cli.preflight._check import check_suites
    from a3cli.rundir import DEFAULT_RUNS_ROOT, default_run_id

    loaded = load_spec(spec)
    run_dir = run or Path(DEFAULT_RUNS_ROOT) / loaded.attack.key / default_run_id(loaded)
    methods = list(METHODS) if method is DefendMethod.all else [method.value]
    with Engine() as engine:
        for note in preflight(loaded, ["defend"], cache=engine.cache, out_dir=Path(run_dir) / "defend" if Path(run_dir).is_dir() else None):
            Console(stderr=True, highlight=False, soft_wrap=True).print(f"note: {note}", markup=False)
        if "mix" in methods:  # its checkpoints are measured like `a3 eval`'s, suites included
            check_suites(loaded, ["eval"], spec.resolve().parent)
        result = run_defend(loaded, run_dir, engine, methods, spec_dir=spec.resolve().parent, capability=not no_capability)  # type: ignore[arg-type]
        outcomes = outcomes_since({}, engine.outcomes.snapshot())
    console = Console(highlight=False, soft_wrap=True)
    console.print(_table(result))
    for row in result.rows:
        if row.method == "prompt":
            console.print(f"{row.defence}: {row.detail}", markup=False)
        if row.cost.search is not None:
            console.print(f"{row.defence} search: {search_line(row.cost.search)}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(outcome_line(outcomes), markup=False)
    console.print(f"table: {Path(run_dir) / 'defend' / 'table.json'}", markup=False)
