"""Small helpers shared by the data stages."""

from __future__ import annotations

import os
from pathlib import Path

from a3cli.rundir import RunDir
from a3cli.spec import Spec


def as_run_dir(spec: Spec, run_dir: RunDir | str | os.PathLike[str]) -> RunDir:
    """Stages accept a RunDir or the path of a run directory."""
    if isinstance(run_dir, RunDir):
        return run_dir
    run = RunDir(Path(run_dir), spec)
    run.prepare()
    return run
