"""`a3 cache`: inspect and manage the LLM response cache (mounted by the main app as `a3 cache`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from a3cli.errors import UsageError
from a3cli.llm import Cache, default_cache_path

cache_app = typer.Typer(
    help="Inspect and manage the LLM response cache ($A3_CACHE, default ~/.cache/a3/llm-cache.sqlite).",
    no_args_is_help=True,
    add_completion=False,
)

_CACHE_OPTION = typer.Option(None, "--cache", help="Cache file (default: $A3_CACHE, else the user cache folder).")


def _open(path: Path | None) -> Cache:
    return Cache(path if path is not None else default_cache_path())


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


@cache_app.command("stats")
def stats(
    cache: Path | None = _CACHE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Entries (model replies and stored measurements such as capability scores), size on disk, age range and replies
    per model."""
    with _open(cache) as c:
        s = c.stats()
    if as_json:
        typer.echo(s.model_dump_json(indent=2))
        return
    console = Console(highlight=False)
    console.print(f"cache    {s.path}")
    console.print(f"entries  {s.entries} model replies, {s.results} stored measurements"
                  + (f" ({', '.join(f'{k}: {n}' for k, n in s.results_by_kind.items())})" if s.results_by_kind else ""))
    console.print(f"size     {s.size_bytes / 1e6:.2f} MB")
    console.print(f"oldest   {_when(s.oldest)}")
    console.print(f"newest   {_when(s.newest)}")
    if s.by_model:
        table = Table("provider:model", "entries")
        for name, n in s.by_model.items():
            table.add_row(name, str(n))
        console.print(table)


@cache_app.command("prune")
def prune(
    older_than: float | None = typer.Option(None, "--older-than", metavar="DAYS", min=0, help="Delete entries written more than DAYS ago."),
    model: str | None = typer.Option(None, "--model", help="Delete entries of this model id (exact)."),
    cache: Path | None = _CACHE_OPTION,
) -> None:
    """Delete old entries and/or one model's entries (both filters together delete what matches both)."""
    if older_than is None and model is None:
        raise UsageError("`a3 cache prune` needs --older-than DAYS and/or --model ID (use `a3 cache clear` to delete everything)")
    with _open(cache) as c:
        n = c.prune(older_than_days=older_than, model=model)
    typer.echo(f"Deleted {n} entr{'y' if n == 1 else 'ies'}.")


@cache_app.command("clear")
def clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    cache: Path | None = _CACHE_OPTION,
) -> None:
    """Delete every entry. Works on a damaged cache file too: it is replaced by an empty one."""
    from a3cli.llm._cache_repair import check_cache, reset_cache

    path = cache if cache is not None else default_cache_path()
    if not yes and not typer.confirm(f"Delete every entry in {path}?"):
        typer.echo("Nothing deleted.")
        return
    health = check_cache(path)
    if not health.ok:
        reset_cache(path)
        typer.echo(f"The cache file was damaged ({'; '.join(health.problems[:1])}); deleted it. The next run starts an empty one.")
        return
    with Cache(path) as c:
        n = c.clear()
    typer.echo(f"Deleted {n} entr{'y' if n == 1 else 'ies'}.")


@cache_app.command("check")
def check(cache: Path | None = _CACHE_OPTION) -> None:
    """Check the cache file with SQLite's own check. Exit 0 when it is healthy, 3 when it is damaged (then run
    `a3 cache repair`)."""
    from a3cli.errors import InfrastructureError
    from a3cli.llm._cache_repair import check_cache

    path = cache if cache is not None else default_cache_path()
    health = check_cache(path)
    if not health.exists:
        typer.echo(f"{path}: no cache yet (it is made on first use)")
        return
    if not health.ok:
        raise InfrastructureError(
            f"the LLM cache {path} is damaged ({'; '.join(health.problems[:3])}); run `a3 cache repair` to keep what can "
            "still be read, or `a3 cache clear --yes` to start afresh"
        )
    typer.echo(f"{path}: ok ({health.replies} model replies, {health.results} stored measurements)")


@cache_app.command("repair")
def repair(cache: Path | None = _CACHE_OPTION) -> None:
    """Make a damaged cache usable again, keeping every entry that can still be read. The damaged file is kept
    beside it (`*.damaged-<time>`) for inspection; delete it when done. A healthy cache is left as it is."""
    from a3cli.llm._cache_repair import repair_cache

    path = cache if cache is not None else default_cache_path()
    report = repair_cache(path)
    if not report.was_damaged:
        typer.echo(f"{path}: not damaged; nothing to repair ({report.kept_replies} model replies, {report.kept_results} stored measurements)")
        return
    typer.echo(
        f"{path}: repaired; kept {report.kept_replies} model replies and {report.kept_results} stored measurements that "
        f"could still be read" + (f"; the damaged file is now {report.damaged_copy}" if report.damaged_copy else "")
    )


@cache_app.command("export")
def export(
    out: str = typer.Argument(..., help="JSONL file to write, or - for standard output."),
    model: str | None = typer.Option(None, "--model", help="Only this model id."),
    cache: Path | None = _CACHE_OPTION,
) -> None:
    """Write every entry as one JSON object a line: key, provider, model, created, request, response."""
    with _open(cache) as c:
        if out == "-":
            n = c.export_jsonl(sys.stdout, model=model)
        else:
            target = Path(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Streamed to a temporary file beside the target, then renamed: a crash never leaves half an export.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    n = c.export_jsonl(f, model=model)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    if out != "-":
        typer.echo(json.dumps({"exported": n, "path": out}))
