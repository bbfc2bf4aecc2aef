"""The Typer application and the one place that turns errors into exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click
import typer
from rich.console import Console

from a3cli import __version__
from a3cli.errors import A3Error

try:  # typer >= 0.20 carries its own copy of click, whose exceptions are not click's
    from typer._click.exceptions import ClickException as _TyperClickException
except ImportError:  # pragma: no cover - older typer uses click itself
    _TyperClickException = click.ClickException
_ABORTS = (click.exceptions.Abort, typer.Abort)
_USAGE_ERRORS = (click.ClickException, _TyperClickException)

EXIT_CODES_HELP = (
    "Exit codes: 0 success (the gate passed); 1 a gate or lint found a problem; 2 a spec or usage error (nothing ran); "
    "3 anything else: infrastructure (a model, key, server or file that cannot be used) or a crash, whose traceback "
    "goes to a log file named in the message. (130: interrupted with Ctrl-C.)"
)

app = typer.Typer(
    name="a3",
    help="Repair a safety failure in a language model from a single example of it.\n\n"
    "Write one YAML attack spec, then `a3 run spec.yaml` (or the stages one by one: generate, split, expect, train, eval).\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
spec_app = typer.Typer(help="Work with spec files: import an A3 JSON config.", no_args_is_help=True)
judge_app = typer.Typer(help="Check a judge against labelled data.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(judge_app, name="judge")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"a3 {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """a3 command line."""


def main() -> None:
    sys.exit(run_cli())


def run_cli(args: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code: a message and a code, never a traceback.

    a3's own errors carry their code (2 for the user's input, 3 for infrastructure); click's usage errors are 2; Ctrl-C
    is 130; anything else is a crash: exit 3, one sentence, and the traceback in a log file whose path is printed.
    Exit 1 comes only from a command that found a problem (a gate, lint, `schema --check`).
    """
    _log_warnings_once()
    try:
        rv = app(args=list(args) if args is not None else None, standalone_mode=False)
    except A3Error as e:
        err_console.print(f"error: {e}", markup=False)
        return e.exit_code
    except _ABORTS:
        err_console.print("error: stopped: no answer could be read from the terminal (pass --yes where a command asks)", markup=False)
        return 2
    except _USAGE_ERRORS as e:
        _show_usage_error(e)
        return 2 if e.exit_code in (0, 1) else e.exit_code  # click's file errors say 1; they are usage errors
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every unexpected failure becomes exit 3
        return _crash(e)
    if isinstance(rv, int) and not isinstance(rv, bool):
        return rv
    return 0


class _OncePerMessage(logging.Filter):
    """A warning repeated by every batch or call (the same server error, the same fallback) is shown once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        if len(self.seen) < 10_000:
            self.seen.add(key)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (a test harness or a progress display may have replaced it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


class _LowerLevel(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _log_warnings_once() -> None:
    """a3's own warnings go to stderr as `warning: ...`, each distinct message once per command."""
    logger = logging.getLogger("a3cli")
    if any(getattr(h, "_a3_cli", False) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler._a3_cli = True  # type: ignore[attr-defined]
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_LowerLevel())
    handler.addFilter(_OncePerMessage())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _show_usage_error(e: Exception) -> None:
    try:
        from typer import rich_utils

        rich_utils.rich_format_error(e)
    except Exception:  # noqa: BLE001 - plain text when rich formatting is unavailable
        e.show()  # type: ignore[attr-defined]


def _crash(e: Exception) -> int:
    from a3cli._crashlog import describe_exception, write_crash_log

    log = write_crash_log(e)
    where = f"; the full traceback is in {log}" if log is not None else ""
    err_console.print(f"error: a3 stopped on an unexpected failure: {describe_exception(e)}{where}", markup=False)
    return 3
