"""The pipeline stages as commands. Each loads the spec, opens the run directory and calls one stage function."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from a3cli.cli._app import app, err_console, judge_app
from a3cli.errors import UsageError
from a3cli.spec import Spec, load_spec

SPEC_ARG = typer.Argument(..., help="The attack spec (YAML).")
RUNS_OPT = typer.Option(Path("runs"), "--runs-dir", help="Root of run directories: <runs-dir>/<attack key>/<run id>/.")
RUN_ID_OPT = typer.Option(None, "--run-id", help="Run id (default: a short hash of the spec, so re-runs resume).")
NO_CACHE_OPT = typer.Option(False, "--no-cache", help="Neither read nor write the LLM cache.")
REFRESH_OPT = typer.Option(False, "--refresh", help="Make every call again and overwrite the cached replies.")

console = Console(highlight=False)


@dataclass
class _Context:
    spec_path: Path
    spec: Spec
    run: object
    engine: object


def _open(
    spec_path: Path, runs_dir: Path, run_id: str | None, no_cache: bool, refresh: bool, stages: list[str], *, force: bool = False,
    extra: list[str] | None = None,
) -> _Context:
    """Validate the spec first (a broken spec is exit 2 with located errors before any work), open the run, then run
    the pre-flight checks for the stages that will do work (keys, models, cache, context window) before any model
    loads."""
    from a3cli.llm import Engine
    from a3cli.preflight import pending_stages, preflight
    from a3cli.rundir import RunDir

    spec = load_spec(spec_path)
    if no_cache and refresh:
        raise UsageError("--no-cache and --refresh exclude each other")
    run = RunDir.open(spec, runs_root=runs_dir, run_id=run_id)
    engine = Engine(mode="no_cache" if no_cache else "refresh" if refresh else "normal")
    todo = (list(stages) if force else pending_stages(run, stages)) + list(extra or [])  # extra: work outside the stages (loops)
    for note in preflight(spec, todo, cache=engine.cache, spec_dir=spec_path.parent):
        err_console.print(f"note: {note}", markup=False)
    return _Context(spec_path, spec, run, engine)


def _stage(ctx: _Context, name: str, runner) -> None:
    """Run one stage command and say what happened: a stage whose outputs were already current is skipped, and says
    so instead of repeating the old run's timing."""
    before = ctx.run.manifest(name)
    manifest = runner()
    _done(name, manifest, ran=before != manifest)


def _done(what: str, manifest, *, ran: bool = True) -> None:
    from a3cli.llm import outcome_line

    if not ran:
        console.print(f"{what}: already done for this spec, skipped ({manifest.stage}/manifest.json)")
        return
    state = "done" if manifest.status == "complete" else manifest.status
    console.print(f"{what}: {state} in {manifest.wall_time_s:.1f}s  ({manifest.stage}/manifest.json)")
    for key, value in manifest.counts.items():
        console.print(f"  {key}: {value}")
    for note in manifest.notes:
        console.print(f"  note: {note}")
    console.print(f"  {outcome_line(manifest.outcomes)}")


@app.command()
def generate(
    spec: Path = SPEC_ARG,
    import_path: Path | None = typer.Option(None, "--import", help="Extra probes from a JSONL with a `prompt` field (e.g. `a3 redteam` attacks)."),
    runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT, no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """Form hypotheses about what triggers the behaviour, write harmful probes and benign twins, run and judge them."""
    from a3cli.stages import run_generate

    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, ["generate"])
    _stage(ctx, "generate", lambda: run_generate(ctx.spec, ctx.run, ctx.engine, import_path=import_path))


@app.command()
def split(
    spec: Path = SPEC_ARG, runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT,
    no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """Split probes into train / validation / OOD by hypothesis and measure the baseline ASR and FPR."""
    from a3cli.stages import run_split

    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, ["split"])
    _stage(ctx, "split", lambda: run_split(ctx.spec, ctx.run, ctx.engine))


@app.command()
def expect(
    spec: Path = SPEC_ARG, runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT,
    no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """Write the replies the model should give: refuse or hold firm on harmful probes, help on benign ones."""
    from a3cli.stages import run_expect

    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, ["expect"])
    _stage(ctx, "expect", lambda: run_expect(ctx.spec, ctx.run, ctx.engine))


@app.command()
def train(
    spec: Path = SPEC_ARG, runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT,
    no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """LoRA fine-tuning iterated by an agent; every checkpoint kept, the best chosen by an explicit rule."""
    from a3cli.stages.train import run_train

    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, ["train"])
    _stage(ctx, "train", lambda: run_train(ctx.spec, ctx.run, ctx.engine, spec_dir=spec.parent))


def print_closing_table(run) -> None:
    from a3cli.stages.harden import loop_rows
    from a3cli.stages.pipeline import closing_rows, gate_rows, stage_costs

    for title, rows in (
        ("Baseline vs chosen checkpoint (95 % Wilson intervals; held-out columns are reported, never used to choose)", closing_rows(run)),
        ("Hardening loops: the red-teamer's held-out attacks on the checkpoint it attacked, and the same attacks on the "
         "checkpoint retrained on its finds (95 % Wilson intervals)", loop_rows(run)),
        ("Gate on the chosen checkpoint (inconclusive: the 95 % interval straddles the limit)", gate_rows(run)),
        ("Stages", stage_costs(run)),
    ):
        if not rows:
            continue
        table = Table(title=title)
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*row.values())
        console.print(table)


@app.command()
def run(
    spec: Path = SPEC_ARG,
    from_stage: str | None = typer.Option(None, "--from", help="First stage to (re-)run: generate, split, expect, train, eval."),
    until_stage: str | None = typer.Option(None, "--until", help="Last stage to run."),
    loops: int = typer.Option(0, "--loops", min=0, max=100, help="Hardening loops after the chosen checkpoint: red-team it, "
                              "train on the successful attacks, re-attack (see loops/ in the run directory)."),
    runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT, no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """Run generate -> split -> expect -> train -> eval, skipping stages whose outputs are current.

    Resumes after a crash or Ctrl-C: finished stages are skipped and model calls are answered by the cache.
    With --loops N, N hardening loops follow: the RL red-teamer attacks the chosen checkpoint, its successful attacks
    join training as a new hypothesis family (train split only), the model is retrained and attacked again.
    Exit code: the gate's (0 pass, 1 fail, 3 infrastructure error) on the final checkpoint when eval ran, else 0.
    """
    from a3cli.errors import UsageError
    from a3cli.stages.pipeline import run_pipeline, stage_range

    stages = stage_range(from_stage, until_stage)
    if loops and stages[-1] != "eval":
        raise UsageError("--loops follows the whole pipeline: leave out --until (or use --until eval)")
    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, list(stages), force=from_stage is not None, extra=["loops", "expect", "train", "eval"] if loops else [])
    console.print(f"run directory: {ctx.run.root}")
    report = run_pipeline(spec, ctx.run, ctx.engine, stages, force=from_stage is not None, announce=console.print)
    gate_status, gate_code, gate_dir = report.gate_status, report.gate_exit_code, ctx.run.root
    if loops:
        from a3cli.stages.harden import final_run, run_loops

        rows = run_loops(spec, ctx.run, ctx.engine, loops, announce=console.print)
        final = final_run(ctx.spec, ctx.run, rows)
        if final is not ctx.run and final.path("eval", "gate.json").exists():
            gate = json.loads(final.path("eval", "gate.json").read_text(encoding="utf-8"))
            gate_status, gate_code, gate_dir = gate["status"], gate["exit_code"], final.root
    print_closing_table(ctx.run)
    console.print(f"total: {report.wall_time_s:.1f}s, {report.model_calls} model calls (cache misses)"
                  + (" before the loops" if loops else ""))
    if gate_status is not None:
        console.print(f"gate: {gate_status} (see {gate_dir}/eval/summary.md)")
        raise typer.Exit(gate_code or 0)


@app.command()
def redteam(
    spec: Path = SPEC_ARG, runs_dir: Path = RUNS_OPT, run_id: str | None = RUN_ID_OPT,
    no_cache: bool = NO_CACHE_OPT, refresh: bool = REFRESH_OPT,
) -> None:
    """Train a red-team generator with reinforcement learning (a3's PPO, or TRL's RLOO or GRPO) against the reward that
    matches the attack (the spec's harmful judge on the target's reply in attack mode).

    Writes redteam/rl/ (stats, checkpoints, the adapter, base-vs-trained evaluation with diversity, a reward/KL plot),
    redteam/success.json (attack mode: held-out attack success with its 95 % interval) and redteam/probes.jsonl, which
    `a3 generate --import` accepts. Re-running resumes from the last checkpoint.
    """
    from a3cli.stages.redteam import run_redteam_stage

    ctx = _open(spec, runs_dir, run_id, no_cache, refresh, ["redteam"])
    _stage(ctx, "redteam", lambda: run_redteam_stage(ctx.spec, ctx.run, ctx.engine, spec_dir=spec.parent))


@judge_app.command("check")
def judge_check(
    spec: Path = SPEC_ARG,
    labels: Path = typer.Option(
        ..., "--labels", help="JSONL of labelled replies: A3 style (refused/harmful booleans, prompt, response) or prompt/reply/label."
    ),
    output_format: str = typer.Option("text", "--format", help="text or json"),
    min_accuracy: float | None = typer.Option(
        None, "--min-accuracy", min=0.0, max=1.0, help="Exit 1 when a judge's accuracy is below this (a CI gate on the judge)."
    ),
) -> None:
    """Agreement of the spec's judges with labelled data, per role: accuracy with its 95 % interval, precision, recall,
    Cohen's kappa, by kind and by case."""
    from a3cli.judges import judge_check as check
    from a3cli.preflight import preflight

    if output_format not in ("text", "json"):
        raise UsageError(f"--format must be text or json (got {output_format!r})")
    loaded = load_spec(spec)
    preflight(loaded, ["judge-check"])
    result = check(loaded, labels)
    if output_format == "json":
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        typer.echo(result.render())
    if min_accuracy is not None:
        low = [r for r in result.roles.values() if r.accuracy.rate is None or r.accuracy.rate < min_accuracy]
        for r in low:
            typer.echo(f"{r.role} judge accuracy {r.accuracy.render()} is below --min-accuracy {min_accuracy:g}", err=True)
        if low:
            raise typer.Exit(1)
