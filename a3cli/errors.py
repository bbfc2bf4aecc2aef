"""Errors meant for people. The CLI prints their message (no traceback) and exits with `exit_code`."""

from __future__ import annotations


class A3Error(Exception):
    """A failure the user can act on. Messages must never contain secrets."""

    exit_code = 2


class SpecError(A3Error):
    """The spec (or another user-written input) is invalid."""

    exit_code = 2


class UsageError(A3Error):
    exit_code = 2


class InfrastructureError(A3Error):
    """The tool could not do its job: a model unreachable, too many unscored verdicts, a missing install."""

    exit_code = 3


class MissingDependencyError(InfrastructureError):
    """An optional package (an extra) or an offline asset package is not installed."""

    def __init__(self, package: str, purpose: str, extra: str | None = None):
        hint = f"pip install 'a3[{extra}]'" if extra else f"pip install --no-deps {package}"
        super().__init__(f"{purpose} needs the package '{package}', which is not installed. Install it with: {hint} (or run scripts/setup.sh).")
        self.package = package
