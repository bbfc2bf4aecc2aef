"""The manifest each stage writes next to its outputs: what went in, what came out, with which tools, at what cost."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3cli.llm._outcomes import RoleOutcomes
from a3cli.rundir._hardware import Hardware

StageStatus = Literal["running", "complete", "failed"]


class RoleUsage(BaseModel):
    """Calls made for one role (target, judge, generator, ...). `cached` calls cost nothing and are counted apart."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    cached: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class StageManifest(BaseModel):
    """One stage's record. `is_current` compares `spec_hash`, `code_version` and the input/output hashes with disk."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    status: StageStatus
    run_id: str
    spec_hash: str = Field(description="sha256 of the spec sections this stage reads (see rundir.STAGE_SPEC_FIELDS).")
    full_spec_hash: str = Field(description="sha256 of the whole spec, for reference only.")
    code_version: str = Field(description="Version of the stage's algorithm; a change makes old outputs stale.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Input file -> sha256. Run-dir files are relative.")
    outputs: dict[str, str] = Field(default_factory=dict, description="Output file (relative to the run dir) -> sha256.")
    tool_versions: dict[str, str] = Field(default_factory=dict)
    hardware: Hardware | None = Field(None, description="Where it ran: CPU model and matrix unit (AMX or not), GPU.")
    precision: dict[str, str] = Field(
        default_factory=dict, description="Use -> numeric precision, e.g. target: float32, training: bf16 (autocast)."
    )
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Role -> model identity used.")
    counts: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, RoleUsage] = Field(default_factory=dict)
    outcomes: dict[str, RoleOutcomes] = Field(
        default_factory=dict, description="Per role: answers re-asked, replaced by a fallback, or given up on, by reason."
    )
    cost_usd: float | None = None
    wall_time_s: float = 0.0
    started_at: str
    finished_at: str | None = None
    notes: list[str] = Field(default_factory=list)
    error: str | None = None
