"""`a3 lint`, `a3 schema` and `a3 spec import`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from a3cli._io import atomic_write_text
from a3cli.cli._app import app, err_console, spec_app
from a3cli.errors import SpecError, UsageError
from a3cli.spec import SCHEMA_FILE, import_a3_config, lint_spec, render_schema


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def lint(
    specs: list[Path] = typer.Argument(..., help="Spec files to check, or folders (every *.yaml / *.yml in them)."),
    output_format: OutputFormat = typer.Option(OutputFormat.text, "--format", help="text, or json for machines."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
) -> None:
    """Check specs before anything runs: schema, templates, referenced files, thresholds, providers.

    Exit 0: no errors. 1: errors found. 2: usage error (a path that does not exist, a folder without specs).
    """
    files = _spec_files(specs)
    # line order, so a long list reads top to bottom like the file (issues without a line first: they stop parsing)
    results = {str(path): sorted(lint_spec(path), key=lambda i: (i.line or 0, i.column or 0)) for path in files}
    failed = any(i.severity == "error" or (strict and i.severity == "warning") for issues in results.values() for i in issues)
    if output_format is OutputFormat.json:
        payload = {
            "ok": not failed,
            "files": [
                {"file": file, "errors": sum(i.severity == "error" for i in issues), "warnings": sum(i.severity == "warning" for i in issues),
                 "issues": [i.model_dump() for i in issues]}
                for file, issues in results.items()
            ],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        for file, issues in results.items():
            errors = sum(i.severity == "error" for i in issues)
            warnings = len(issues) - errors
            for issue in issues:
                err_console.print(issue.render(), markup=False)
            status = "FAILED" if errors else ("FAILED (--strict: warnings count as errors)" if strict and warnings else "ok")
            typer.echo(f"{file}: {status} ({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})")
    raise typer.Exit(1 if failed else 0)


def _spec_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise UsageError(f"{path}: a folder with no *.yaml or *.yml spec in it")
            out += found
        elif path.exists():
            out.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return out


@app.command()
def schema(
    out: Path = typer.Option(SCHEMA_FILE, "--out", "-o", help="Where to write the JSON Schema."),
    check: bool = typer.Option(False, "--check", help="Exit 1 if the file on disk differs from the models instead of writing."),
) -> None:
    """Write the JSON Schema of specs (from the pydantic models) for editors and CI."""
    text = render_schema()
    if check:
        if not out.exists():
            err_console.print(f"{out} does not exist: run `a3 schema --out {out}`", markup=False)
            raise typer.Exit(1)
        if out.read_text(encoding="utf-8") != text:
            err_console.print(f"{out} is stale: run `a3 schema`", markup=False)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    atomic_write_text(out, text)
    typer.echo(f"wrote {out}")


@spec_app.command("import")
def spec_import(
    config: Path = typer.Argument(..., help="An original A3 JSON config."),
    out: Path | None = typer.Option(None, "--out", "-o", help="YAML file to write (default: print to stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    a3_root: Path | None = typer.Option(
        None, "--a3-root", help="The A3 checkout the config's relative paths (paths.dolci_responses_file) refer to. "
        "Default: guessed from the config's location.",
    ),
) -> None:
    """Convert an A3 JSON config into an a3 YAML spec, saying what was dropped."""
    if out is not None and out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    schema_ref = "../schemas/attack-spec.schema.json"
    if out is not None:
        import os

        schema_ref = os.path.relpath(Path.cwd() / SCHEMA_FILE, (out.parent if out.parent != Path("") else Path(".")).resolve())
    try:
        if a3_root is not None and not a3_root.is_dir():
            raise UsageError(f"--a3-root {a3_root}: no such folder")
        text, report = import_a3_config(config, schema_ref=schema_ref, a3_root=a3_root, out_dir=out.parent if out is not None else None)
    except KeyError as e:
        raise SpecError(f"{config}: not an A3 config this version understands (no `{e.args[0]}` where one was expected)") from None
    except (TypeError, ValueError) as e:
        raise SpecError(f"{config}: not an A3 config this version understands ({e})") from None
    for line in report.dropped:
        err_console.print(f"dropped  {line}", markup=False)
    for line in report.notes:
        err_console.print(f"note     {line}", markup=False)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
        err_console.print(f"wrote {out}; check it with `a3 lint {out}`", markup=False)
