"""The run directory: `runs/<spec key>/<run id>/` with every stage's outputs and a manifest per stage."""

from a3cli.rundir._hardware import Hardware, machine
from a3cli.rundir._manifest import RoleUsage, StageManifest, StageStatus
from a3cli.rundir._rundir import (
    DEFAULT_RUNS_ROOT,
    MANIFEST,
    SPEC_FILE,
    STAGE_SPEC_FIELDS,
    RunDir,
    RunDirError,
    RunFolderError,
    StageRecorder,
    default_run_id,
    model_identity,
    register_stage,
    sha256_file,
    spec_fields_hash,
    stage_spec_hash,
    tool_versions,
)

__all__ = [
    "DEFAULT_RUNS_ROOT",
    "Hardware",
    "MANIFEST",
    "SPEC_FILE",
    "STAGE_SPEC_FIELDS",
    "RoleUsage",
    "RunDir",
    "RunDirError",
    "RunFolderError",
    "StageManifest",
    "StageRecorder",
    "StageStatus",
    "default_run_id",
    "machine",
    "model_identity",
    "register_stage",
    "sha256_file",
    "spec_fields_hash",
    "stage_spec_hash",
    "tool_versions",
]
