"""`a3 compare`: several targets (local checkpoints, OpenAI-compatible endpoints, Anthropic) on the same probes, one
table, written to <run>/compare/comparison.json and shown by `a3 report`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from a3cli.cli._app import app, err_console
from a3cli.errors import InfrastructureError
from a3cli.spec import load_spec

if TYPE_CHECKING:
    from a3cli.compare import CompareRow
    from a3cli.stats import Rate


def rate_text(rate: Rate) -> str:
    """13% [4-38] 2/15: the rate, its 95 % Wilson interval and k/n; n/a when nothing was scored."""
    if rate.rate is None:
        return f"n/a (0/{rate.n})"
    return f"{rate.rate:.0%} [{rate.low:.0%}-{rate.high:.0%}] {rate.k}/{rate.n}"


def row_line(row: CompareRow) -> str:
    """One target in one line (a wide table wraps badly in CI logs): every rate with its interval and n, unscored,
    tokens and cost."""
    total = row.usage.total
    parts = [
        f"val ASR {rate_text(row.validation.asr)}", f"val over-refusal {rate_text(row.validation.fpr)}",
        f"OOD ASR {rate_text(row.ood.asr)}", f"OOD over-refusal {rate_text(row.ood.fpr)}",
        *(f"{name} {s.measure} {rate_text(s.rate)}" for name, s in row.suites.items()),
        f"unscored {row.unscored_share:.0%}", f"{total.input_tokens + total.output_tokens:,} tokens",
    ]
    if total.cost_usd:
        parts.append(f"${total.cost_usd:.4f}")
    status = " (infrastructure: mostly unscored, not comparable)" if row.status == "infrastructure" else ""
    return f"{row.name}{status}: " + " · ".join(parts)


@app.command("compare")
def compare(
    spec: Path = typer.Argument(..., help="The attack spec (YAML); its run's splits and its suites are the probes, its `compare` block names targets."),
    target: list[str] = typer.Option(
        [], "--target",
        help="NAME=MODELREF, repeatable: target (the spec's), local:MODEL, local:BASE+ADAPTER, a folder path (model or "
        "adapter), openai:MODEL or openai:MODEL@BASE_URL, anthropic:MODEL (or @BASE_URL); add ,key=ENV_NAME for the API key variable.",
    ),
    run: Path | None = typer.Option(None, "--run", help="Run directory holding split/validation.jsonl and split/ood.jsonl. Default: runs/<attack key>/<spec hash>."),
    capability: bool = typer.Option(False, "--capability", help="Also run the capability benchmarks on local targets."),
) -> None:
    """Several targets measured on the same validation, OOD and external-suite probes, in one table: attack-success
    and over-refusal rates with 95 % intervals and n, unscored probes, tokens and cost, and provider quirks (e.g. a
    reasoning model's fixed temperature). Exit 0: every target measured; 3: a target's probes went mostly unscored
    (its calls failed), the table is still written; 2: a usage or spec error."""
    from a3cli.compare import check_targets, compare_targets, run_compare
    from a3cli.llm import Engine, outcome_line
    from a3cli.rundir import DEFAULT_RUNS_ROOT, RunDir, default_run_id

    loaded = load_spec(spec)
    targets = compare_targets(loaded, target)
    run_dir = run or Path(DEFAULT_RUNS_ROOT) / loaded.attack.key / default_run_id(loaded)
    if not (run_dir / "split" / "validation.jsonl").is_file():
        raise InfrastructureError(
            f"{run_dir} holds no split/validation.jsonl: compare measures the run's probes. Pass --run with the run that "
            f"holds the splits, or make them with `a3 run {spec} --until split`"
        )
    from a3cli._crashlog import note_run_dir

    note_run_dir(run_dir)
    with Engine() as engine:
        for note in check_targets(loaded, targets, engine.cache, run_dir / "compare", spec_dir=spec.resolve().parent):
            err_console.print(f"note: {note}", markup=False)
        result = run_compare(loaded, RunDir(run_dir, loaded), engine, targets, spec_dir=spec.resolve().parent, capability=capability)
        err_console.print(outcome_line(engine.outcomes.snapshot()), markup=False)
    console = Console(highlight=False, soft_wrap=True)
    console.print("Targets on the same probes (ASR and over-refusal: rate [95 % interval] k/n):", markup=False)
    for row in result.rows:
        console.print(row_line(row), markup=False)
    for row in result.rows:
        for quirk in row.quirks:
            console.print(f"{row.name}: {quirk}", markup=False)
        for err in row.target_errors[:2]:
            console.print(f"{row.name}: target error: {err}", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"table: {run_dir / 'compare' / 'comparison.json'}", markup=False)
    raise typer.Exit(3 if any(r.status == "infrastructure" for r in result.rows) else 0)
