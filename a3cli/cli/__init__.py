"""The `a3` command line. Importing the command modules registers their commands on the app."""

from a3cli.cli import _compare_cmd, _defend_cmd, _eval_report_cmds, _pipeline_cmds, _spec_cmds  # noqa: F401  (registration by import)
from a3cli.cli._app import app, main, run_cli
from a3cli.cli._cache_cmd import cache_app

app.add_typer(cache_app, name="cache")

__all__ = ["app", "main", "run_cli"]
