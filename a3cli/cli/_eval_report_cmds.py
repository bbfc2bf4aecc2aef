"""`a3 eval` (the CI gate) and `a3 report` (one self-contained HTML file)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from a3cli._io import atomic_write_text, write_json
from a3cli.cli._app import app, err_console
from a3cli.errors import A3Error, InfrastructureError, UsageError
from a3cli.spec import Spec, load_spec

_STATUS_WORD = {"pass": "PASS ", "fail": "FAIL ", "inconclusive": "INCONCLUSIVE", "error": "ERROR", "skipped": "SKIP "}


def _exit_on_user_error(e: A3Error) -> None:
    err_console.print(f"error: {e}", markup=False)
    raise typer.Exit(e.exit_code)


def _default_run_dir(spec: Spec) -> Path:
    from a3cli.rundir import DEFAULT_RUNS_ROOT, default_run_id

    return Path(DEFAULT_RUNS_ROOT) / spec.attack.key / default_run_id(spec)


@app.command("eval")
def eval_(
    spec: Path = typer.Argument(..., help="The attack spec (YAML); its `gate` block sets the thresholds."),
    model: str | None = typer.Option(None, "--model", help="Model to evaluate (folder, Hub id, pypi:... ref or API model id). Default: the spec's target."),
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter folder loaded on top of --model (provider local)."),
    baseline: Path | None = typer.Option(None, "--baseline", help="Run directory or JSON file with the baseline to compare against (capability drop, relative gates). Default: the run's own baseline when it has one."),
    run: Path | None = typer.Option(None, "--run", help="Run directory holding split/validation.jsonl and split/ood.jsonl. Default: runs/<attack key>/<spec hash>."),
    out: Path | None = typer.Option(None, "--out", help="Folder for result.json, samples.jsonl, gate.json, summary.md. Default: <run>/eval/<adapter or model name>."),
    no_capability: bool = typer.Option(False, "--no-capability", help="Skip the capability benchmarks and KL drift."),
    junit: Path | None = typer.Option(None, "--junit", help="Also write the gate as JUnit XML here (one testcase per criterion)."),
    strict: bool = typer.Option(False, "--strict", help="Inconclusive checks (95% interval straddles the limit) fail the gate, as gate.strict does."),
) -> None:
    """ASR/FPR on validation and OOD plus capability, checked against the spec's gate.

    Each check passes, fails, or is inconclusive when its 95 % interval straddles the limit; inconclusive checks fail
    the gate with --strict (or gate.strict), otherwise their point estimate decides.

    Exit 0: gate passed. 1: gate failed. 2: spec or usage error. 3: infrastructure failure (model unreachable, a
    required file missing, too many unscored verdicts). Appends a Markdown summary to $GITHUB_STEP_SUMMARY when set.
    """
    from a3cli.evaluate import (
        append_step_summary,
        apply_gate,
        evaluate_checkpoint,
        gate_error,
        junit_xml,
        load_baseline,
        markdown_summary,
        target_override,
    )
    from a3cli.llm import Engine, outcome_line
    from a3cli.preflight import preflight

    started = time.monotonic()
    try:
        loaded = load_spec(spec)
    except A3Error as e:
        _exit_on_user_error(e)
    if strict:
        loaded = loaded.model_copy(update={"gate": loaded.gate.model_copy(update={"strict": True})})
    run_dir = run or _default_run_dir(loaded)
    if run_dir.is_dir():
        from a3cli._crashlog import note_run_dir

        note_run_dir(run_dir)  # an unexpected crash leaves its traceback there
    if baseline is None:
        from a3cli.evaluate import BASELINE_CANDIDATES

        if any((run_dir / rel).is_file() for rel in BASELINE_CANDIDATES):
            baseline = run_dir  # the run's base-model evaluation: what a fine-tune of it is gated against
            err_console.print(f"baseline: the run's own ({run_dir}); --baseline picks another", markup=False)
    # Not <run>/eval itself: that folder is the pipeline's eval stage (the gate on the chosen checkpoint).
    out_dir = out or run_dir / "eval" / _label(model or loaded.target.model, adapter)
    result = None
    stage = "baseline"  # names the gate's error criterion if something below cannot be done
    try:
        ref, source = load_baseline(baseline) if baseline is not None else (None, None)
        stage = "evaluation"
        if run is not None and not run.is_dir():
            raise InfrastructureError(f"run directory {run} not found")
        if run is None and not run_dir.is_dir():
            raise InfrastructureError(
                f"no run directory for this spec at {run_dir}: a run's id hashes the spec (all but the gate's thresholds), so "
                f"an edited spec points to a new one. Pass --run with the run that holds the splits, or make it with "
                f"`a3 run {spec} --until split`"
            )
        with Engine() as engine:
            for note in preflight(loaded, ["eval"], cache=engine.cache, target=target_override(loaded, model, adapter), out_dir=out_dir, spec_dir=spec.parent):
                err_console.print(f"note: {note}", markup=False)
            result = evaluate_checkpoint(loaded, run_dir, engine, model=model, adapter=adapter, capability=not no_capability,
                                         out_dir=out_dir, spec_dir=spec.parent)
            err_console.print(outcome_line(engine.outcomes.snapshot()), markup=False)  # the judge's re-asks and unscored
        gate = apply_gate(result, loaded.gate, ref, baseline_source=source, suites=loaded.suites)
    except InfrastructureError as e:
        gate = gate_error(str(e), loaded.gate, name=stage, model=model or loaded.target.model, adapter=adapter)
    except A3Error as e:  # spec and usage errors: nothing was measured, no artefacts
        _exit_on_user_error(e)

    summary = markdown_summary(gate, result)
    try:
        write_json(out_dir / "gate.json", gate.model_dump(mode="json"))
        atomic_write_text(out_dir / "summary.md", summary)
        if junit is not None:
            xml = junit_xml(gate, suite=f"a3 gate: {loaded.attack.key}", classname=f"a3.gate.{loaded.attack.key}",
                            time_s=time.monotonic() - started)
            atomic_write_text(junit, xml)
    except OSError as e:
        from a3cli._crashlog import describe_exception

        raise InfrastructureError(f"{gate.summary} The gate's files could not be written: {describe_exception(e)}") from None
    append_step_summary(summary)

    for c in gate.criteria:
        fails = " (fails the gate)" if c.status == "inconclusive" and c.fails_gate(gate.gate.strict) else ""
        typer.echo(f"{_STATUS_WORD[c.status]}{fails} {c.name}: {c.message}")
    typer.echo(gate.summary)
    written = [out_dir / n for n in (("result.json", "samples.jsonl") if result is not None else ()) + ("gate.json", "summary.md")]
    typer.echo("wrote " + ", ".join(str(p) for p in [*written, *([junit] if junit else [])]))
    raise typer.Exit(gate.exit_code)


def _label(model: str, adapter: str | None) -> str:
    """A folder name for one evaluated checkpoint: the adapter's folder name (with its parent's when it is a3's generic
    `adapter`, so iteration_1/adapter and iteration_2/adapter do not share one), else the model's last path segment."""
    if adapter:
        path = Path(adapter.rstrip("/\\"))
        name = f"{path.parent.name}-{path.name}" if path.name == "adapter" and path.parent.name else path.name
    else:
        name = model.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<key>/<id>)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="HTML file to write. Default: <run>/report.html."),
) -> None:
    """Write one self-contained HTML report of a run (no network needed to view it); missing stages say "not run yet"."""
    from a3cli.report import write_report

    try:
        if not run_dir.is_dir():
            raise UsageError(f"run directory {run_dir} not found")
        if not _looks_like_run(run_dir):
            raise UsageError(
                f"{run_dir} is not an a3 run folder (it has no spec.json and no stage manifest); pass a folder like "
                "runs/<attack key>/<run id>"
            )
        path = write_report(run_dir, output)
    except A3Error as e:
        _exit_on_user_error(e)
    typer.echo(f"wrote {path}")


def _looks_like_run(folder: Path) -> bool:
    from a3cli.rundir import MANIFEST, SPEC_FILE

    return (folder / SPEC_FILE).is_file() or any(p.is_file() for p in folder.glob(f"*/{MANIFEST}"))
