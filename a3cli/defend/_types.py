"""The one row model every defence reports, and the per-method results written under `run_dir/defend/`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3cli.evaluate import TaskCapability
from a3cli.evaluate._result import SuiteResult
from a3cli.llm import UsageReport
from a3cli.probes import SplitMetrics

Method = Literal["icl", "prompt", "mix"]
METHODS: tuple[Method, ...] = ("icl", "prompt", "mix")


class AddedTokens(BaseModel):
    """Prompt tokens a defence adds to every request (mean over the evaluated validation and OOD requests).

    `method` says how they were counted: with the target's own tokenizer and chat template (`tokenizer`), or estimated
    as characters / 4 when the target is remote (`estimated chars/4`); fine-tuned checkpoints add none (`none`)."""

    model_config = ConfigDict(extra="forbid")

    per_request: float = Field(ge=0.0)
    method: Literal["tokenizer", "estimated chars/4", "none"]


class SearchCost(BaseModel):
    """What a prompt optimiser's search alone cost (before the prompt it found was measured)."""

    model_config = ConfigDict(extra="forbid")

    optimizer: str = Field(description="e.g. dspy.GEPA")
    budget: str = Field(description="How the budget was set: auto=<preset>, max_metric_calls=N, or a3's default.")
    budget_metric_calls: int | None = Field(None, description="The metric calls (target reply + judge) that budget allowed.")
    metric_calls: int | None = Field(None, description="The metric calls the search made.")
    train_examples: int = Field(description="Training probes it reflected on (after max_train_samples).")
    val_examples: int = Field(description="Validation probes of its valset (after max_val_samples); never OOD or a suite.")
    usage: UsageReport = Field(default_factory=UsageReport, description="Model calls, tokens and estimated USD by role.")
    wall_time_s: float = 0.0


class DefenceCost(BaseModel):
    """What finding the defence cost: model calls by role (target, judge, agent...), wall time, and training time."""

    model_config = ConfigDict(extra="forbid")

    usage: UsageReport = Field(default_factory=UsageReport, description="Calls, tokens and estimated USD by role (cache hits cost nothing).")
    wall_time_s: float = 0.0
    train_time_s: float | None = Field(None, description="Training loop time, LoRA or full (fixed-mix rows only).")
    search: SearchCost | None = Field(None, description="The optimiser's search alone (GEPA rows); `usage` includes it.")


class DefenceRow(BaseModel):
    """One line of the comparison table: a defence and what it achieves on the held-out splits."""

    model_config = ConfigDict(extra="forbid")

    defence: str = Field(description="Short name, e.g. baseline, icl:nearest, prompt:offline, prompt:gepa, mix:h0.30.")
    method: Literal["baseline", "icl", "prompt", "mix"]
    detail: str = Field(description="What was chosen and how, in one or two sentences.")
    validation: SplitMetrics
    ood: SplitMetrics
    capability: dict[str, TaskCapability] | None = Field(
        None, description="Benchmark accuracy by task (fixed-mix checkpoints, and the baseline when the mix sweep ran); "
        "None where it was not measured (prompt and in-context defences leave the weights unchanged)."
    )
    suites: dict[str, SuiteResult] = Field(
        default_factory=dict,
        description="The spec's external suites, by name (fixed-mix checkpoints, measured like `a3 eval`; reported, never "
        "read to choose). Empty where they were not measured: prompt and in-context defences are scored on the splits.",
    )
    added_prompt_tokens: AddedTokens
    cost: DefenceCost
    notes: list[str] = Field(default_factory=list)


class MethodResult(BaseModel):
    """`run_dir/defend/<method>/result.json`: the method's table rows plus everything it tried."""

    model_config = ConfigDict(extra="forbid")

    method: Method
    spec_hash: str | None = Field(None, description="Hash of the spec sections `a3 defend` reads; a mismatch leaves the result out of the table.")
    rows: list[DefenceRow]
    attempts: list[dict[str, Any]] = Field(default_factory=list, description="Every candidate tried, with its metrics and provenance.")
    notes: list[str] = Field(default_factory=list)
    skipped: str | None = Field(None, description="Why the method produced no row (e.g. a remote target cannot be fine-tuned).")
    baseline_capability: dict[str, TaskCapability] | None = Field(
        None, description="The undefended target's capability, measured by the mix sweep for comparison."
    )


class DefendResult(BaseModel):
    """`run_dir/defend/table.json`: the baseline and every defence's rows (the methods run now and earlier)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    rows: list[DefenceRow]
    methods: dict[str, MethodResult] = Field(default_factory=dict)
    selection_rule: str
    notes: list[str] = Field(default_factory=list)
