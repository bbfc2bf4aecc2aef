"""What one evaluation of a checkpoint measured: ASR/FPR on validation and OOD, capability, drift, cost."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3cli.llm import UsageReport
from a3cli.probes import SplitMetrics
from a3cli.rundir import Hardware
from a3cli.stats import Rate

RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"

SplitName = Literal["validation", "ood"]


class TaskCapability(BaseModel):
    """One benchmark's accuracy; `stderr` is lm-eval's standard error (None when it reports none)."""

    model_config = ConfigDict(extra="forbid")

    accuracy: float = Field(ge=0.0, le=1.0)
    stderr: float | None = Field(None, ge=0.0)
    n: int = Field(ge=0)


class SuiteResult(BaseModel):
    """One external suite measured on a checkpoint: its prompts' metrics (ASR for a harmful suite, over-refusal for a
    benign one) and exactly which prompts (source and a hash of the prompt list)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["harmful", "benign"]
    metrics: SplitMetrics
    source: str
    prompts_sha256: str

    @property
    def rate(self) -> Rate:
        return self.metrics.asr if self.kind == "harmful" else self.metrics.fpr

    @property
    def measure(self) -> str:
        return "ASR" if self.kind == "harmful" else "over-refusal"


class EvalResult(BaseModel):
    """`result.json`: one checkpoint (a model, optionally with a LoRA adapter) measured on the run's held-out probes.

    Rates are over scored probes only; unscored ones (failed target calls, unparseable judges) are counted apart in
    each split and in `unscored_share`, which the gate treats as an infrastructure failure above `gate.max_unscored`.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The target model evaluated (spec.target.model unless overridden).")
    provider: str
    model_fingerprint: str | None = Field(None, description="sha256 over a local model's weight, config and tokenizer files.")
    adapter: str | None = None
    adapter_fingerprint: str | None = Field(None, description="sha256 over the adapter's weight and config files.")
    validation: SplitMetrics
    ood: SplitMetrics
    suites: dict[str, SuiteResult] = Field(default_factory=dict, description="External suites (spec `suites`), by name.")
    capability: dict[str, TaskCapability] | None = Field(None, description="Per benchmark task; None when not measured.")
    kl_drift: float | None = Field(None, description="Mean per-token KL(tuned || base) on held-out general prompts, in nats.")
    unscored_share: float = Field(ge=0.0, le=1.0, description="Unscored probes over all probes: validation, OOD and suites together.")
    target_errors: list[str] = Field(default_factory=list, description="Distinct target-call errors (at most 5), for the log.")
    usage: UsageReport = Field(default_factory=UsageReport)
    wall_time_s: float = 0.0
    hardware: Hardware | None = Field(None, description="Where it ran (CPU model and matrix unit, GPU).")
    precision: str | None = Field(None, description="The evaluated model's dtype, e.g. float32.")
    notes: list[str] = Field(default_factory=list)

    def split(self, name: SplitName) -> SplitMetrics:
        return self.validation if name == "validation" else self.ood

    def held_out_figures(self) -> dict[str, Any]:
        """The figures no chooser may read (OOD and the external suites), for the tables that report them."""
        return {
            "ood": {"asr": self.ood.asr.model_dump(mode="json"), "fpr": self.ood.fpr.model_dump(mode="json")},
            "suites": {name: {"kind": s.kind, "rate": s.rate.model_dump(mode="json")} for name, s in self.suites.items()},
        }

    def all_metrics(self) -> list[SplitMetrics]:
        return [self.validation, self.ood, *(s.metrics for s in self.suites.values())]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def unscored_share(*splits: SplitMetrics) -> float:
    total = sum(s.n_harmful + s.n_benign for s in splits)
    return sum(s.unscored for s in splits) / total if total else 0.0
