"""`compare/comparison.json`: several targets measured on the same probes, one row each."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3cli.evaluate import TaskCapability
from a3cli.evaluate._result import SuiteResult
from a3cli.llm import UsageReport
from a3cli.probes import SplitMetrics


class CompareRow(BaseModel):
    """One target: ASR and over-refusal (FPR) with their 95 % intervals and n on validation, OOD and every suite,
    unscored counts, and what measuring it cost. Shaped like an EvalResult, so the report's tables read it as one."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: dict[str, Any] = Field(description="provider, model, endpoint (no credentials), adapter, sampling.")
    model_fingerprint: str | None = Field(None, description="Local weights' content hash (a remote model has none).")
    adapter_fingerprint: str | None = None
    status: Literal["measured", "infrastructure"] = Field(
        description="infrastructure: more unscored probes than gate.max_unscored allows (its calls failed or went unjudged)."
    )
    validation: SplitMetrics
    ood: SplitMetrics
    suites: dict[str, SuiteResult] = Field(default_factory=dict)
    capability: dict[str, TaskCapability] | None = None
    unscored_share: float
    usage: UsageReport = Field(default_factory=UsageReport, description="This target's calls, tokens and estimated USD (target and judge).")
    wall_time_s: float = 0.0
    quirks: list[str] = Field(default_factory=list, description="How the provider departed from the settings (e.g. a fixed temperature).")
    target_errors: list[str] = Field(default_factory=list)
    result: str = Field(description="This target's EvalResult and samples, relative to the run folder.")
    notes: list[str] = Field(default_factory=list)


class CompareResult(BaseModel):
    """Every target on the same validation, OOD and suite probes (their counts and the suites' prompt hashes say so)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    probes: dict[str, Any] = Field(description="validation and OOD probe counts, and each suite's count and prompt hash.")
    rows: list[CompareRow]
    notes: list[str] = Field(default_factory=list)
