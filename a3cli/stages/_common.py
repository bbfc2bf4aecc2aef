"""Small helpers shared by the data stages."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from a3cli.errors import InfrastructureError
from a3cli.rundir import RunDir
from a3cli.spec import Spec


def as_run_dir(spec: Spec, run_dir: RunDir | str | os.PathLike[str]) -> RunDir:
    """Stages accept a RunDir or the path of a run directory."""
    if isinstance(run_dir, RunDir):
        return run_dir
    run = RunDir(Path(run_dir), spec)
    run.prepare()
    return run


class CallsFailedError(InfrastructureError):
    """Model calls of a stage failed for reasons that say nothing about the request (a server down, a timeout, a
    rate limit outlasting the retries). The stage stops incomplete; its successful calls are cached, so re-running the
    same command makes exactly the failed ones again."""


def failure_mark(engine: Any) -> int:
    """A point in the engine's list of failed calls, for `raise_on_failed_calls` to look after."""
    failed = getattr(engine, "failed_calls", None)
    return len(failed()) if callable(failed) else 0


def raise_on_failed_calls(engine: Any, since: int, stage: str) -> None:
    """Stop `stage` when any call since `since` failed transiently, saying which roles and why."""
    failed_calls = getattr(engine, "failed_calls", None)
    if not callable(failed_calls):
        return
    failed = [f for f in failed_calls(since) if f.transient]
    if not failed:
        return
    by_role = Counter(f.role for f in failed)
    first: dict[str, Any] = {}
    for f in failed:
        first.setdefault(f.role, f)
    parts = [
        f"{n} {role} call{'s' * (n != 1)} to {first[role].provider} model {first[role].model!r} "
        f"({first[role].error.kind}: {first[role].error.message})"
        for role, n in by_role.most_common()
    ]
    raise CallsFailedError(
        f"{stage}: {'; '.join(parts)} failed after their retries. The stage is left incomplete; re-run the same "
        "command to make exactly the failed calls again (the others come from the cache)"
    )
