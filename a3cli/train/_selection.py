"""The checkpoint-selection rule, explicit and pure. It reads the validation split only.

Held out means held out: OOD and external-suite figures are measured for every candidate and reported beside this
table, but `IterationResult` has no field for them, so the rule cannot read them, and neither can the search score,
the training agent or the defences that reuse this rule.

Primary rule: among iterations whose validation ASR is at most the target and whose capability drop against the
baseline is within tolerance, choose the lowest validation FPR (ties: lower validation ASR, then the earlier
iteration). Capability drops come with a standard error, sqrt(se_base^2 + se_tuned^2); when 1.96*se exceeds the
tolerance the measurement cannot tell "no drop" from "a drop of the tolerance", and the row and the reason say so.
The pass/fail itself uses the point estimate: a noisy measurement is flagged, not silently treated as a failure.

Fallback, when nothing qualifies: among iterations within capability tolerance, the lowest validation ASR + FPR that
beats the baseline's own; otherwise the baseline."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_Z = 1.96
_EPS = 1e-12


class IterationResult(BaseModel):
    """What the rule may read about one candidate: its validation rates and its capability. Nothing held out."""

    model_config = ConfigDict(extra="forbid")

    iteration: int = Field(ge=0)
    asr: float = Field(ge=0.0, le=1.0, description="Validation ASR (an unmeasured rate is passed as 1.0).")
    fpr: float = Field(ge=0.0, le=1.0, description="Validation FPR (an unmeasured rate is passed as 1.0).")
    capability: float | None = None
    capability_se: float | None = Field(default=None, ge=0.0)

    @model_validator(mode="after")
    def _se_needs_value(self) -> IterationResult:
        if self.capability_se is not None and self.capability is None:
            raise ValueError("capability_se given without capability")
        return self


class CandidateRow(BaseModel):
    iteration: int | Literal["baseline"]
    asr_val: float
    fpr_val: float
    asr_ok: bool = Field(description="asr_val <= target")
    capability_drop: float | None = Field(description="baseline capability minus this one's (positive = worse)")
    capability_drop_se: float | None
    capability_ok: bool | None = Field(description="drop <= tolerance; None when capability was not measured at all")
    noise_too_large: bool = Field(description="1.96 * se of the drop exceeds the tolerance")
    qualifies: bool
    notes: list[str] = Field(default_factory=list)


class Selection(BaseModel):
    chosen: int | Literal["baseline"]
    reason: str
    rule: Literal["primary", "fallback", "baseline"]
    asr_target: float
    capability_tolerance: float
    noise_warning: bool = Field(description="some capability comparison could not resolve the tolerance")
    candidates: list[CandidateRow]


def _capability(
    it: IterationResult, baseline: IterationResult, tolerance: float
) -> tuple[float | None, float | None, bool | None, bool, list[str]]:
    notes: list[str] = []
    if baseline.capability is None and it.capability is None:
        return None, None, None, False, ["capability not measured; criterion skipped"]
    if baseline.capability is None:
        return None, None, False, False, ["baseline capability missing; cannot compare"]
    if it.capability is None:
        return None, None, False, False, ["capability not measured for this iteration"]
    drop = baseline.capability - it.capability
    se = None
    noisy = False
    if baseline.capability_se is not None and it.capability_se is not None:
        se = math.sqrt(baseline.capability_se**2 + it.capability_se**2)
        noisy = _Z * se > tolerance + _EPS
        if noisy:
            notes.append(f"noise too large to resolve the tolerance: 1.96*se={_Z * se:.4f} > {tolerance:.4f}")
    else:
        notes.append("no standard error given; drop compared as a point estimate")
    ok = drop <= tolerance + _EPS
    return drop, se, ok, noisy, notes


def _row(it: IterationResult, label: int | Literal["baseline"], baseline: IterationResult, target: float, tol: float) -> CandidateRow:
    asr_ok = it.asr <= target + _EPS
    drop, se, cap_ok, noisy, notes = _capability(it, baseline, tol)
    return CandidateRow(
        iteration=label,
        asr_val=it.asr,
        fpr_val=it.fpr,
        asr_ok=asr_ok,
        capability_drop=drop,
        capability_drop_se=se,
        capability_ok=cap_ok,
        noise_too_large=noisy,
        qualifies=asr_ok and cap_ok is not False,
        notes=notes,
    )


def _key(*values: float) -> tuple[float, ...]:
    # Rates from finite samples tie exactly often; round so float noise does not break ties arbitrarily.
    return tuple(round(v, 9) for v in values)


def select_checkpoint(
    baseline: IterationResult,
    iterations: list[IterationResult],
    *,
    asr_target: float,
    capability_tolerance: float,
) -> Selection:
    """Apply the selection rule (module docstring) to the iterations' validation results."""
    if not 0.0 <= asr_target <= 1.0:
        raise ValueError("asr_target must be in [0, 1]")
    if capability_tolerance < 0:
        raise ValueError("capability_tolerance must be >= 0")
    seen = [it.iteration for it in iterations]
    if len(seen) != len(set(seen)):
        raise ValueError("iteration ids must be unique")
    ordered = sorted(iterations, key=lambda it: it.iteration)
    base_row = _row(baseline, "baseline", baseline, asr_target, capability_tolerance)
    base_row.qualifies = False
    base_row.notes.append("reference; chosen only as the last fallback")
    rows = [_row(it, it.iteration, baseline, asr_target, capability_tolerance) for it in ordered]
    table = [base_row, *rows]
    noise_warning = any(r.noise_too_large for r in rows)
    noise_text = (
        " Warning: for some iterations the capability noise is too large to resolve the tolerance "
        "(1.96*se > tolerance); evaluate on more capability items to make this check meaningful."
        if noise_warning
        else ""
    )

    def pick(candidates: list[CandidateRow], key) -> CandidateRow:
        return min(candidates, key=lambda r: (*key(r), r.iteration))

    def decide(chosen: int | Literal["baseline"], reason: str, rule: Literal["primary", "fallback", "baseline"]) -> Selection:
        return Selection(
            chosen=chosen, reason=reason + noise_text, rule=rule, asr_target=asr_target,
            capability_tolerance=capability_tolerance, noise_warning=noise_warning, candidates=table,
        )

    qualified = [r for r in rows if r.qualifies]
    if qualified:
        best = pick(qualified, lambda r: _key(r.fpr_val, r.asr_val))
        cap = (
            "capability not measured"
            if best.capability_ok is None
            else f"capability drop {best.capability_drop:+.4f} within {capability_tolerance}"
        )
        reason = (
            f"iteration {best.iteration}: lowest validation FPR ({best.fpr_val:.4f}) among {len(qualified)} iteration(s) "
            f"with validation ASR <= {asr_target} and {cap}."
        )
        return decide(best.iteration, reason, "primary")

    within = [r for r in rows if r.capability_ok is not False]
    base_score = baseline.asr + baseline.fpr
    better = [r for r in within if _key(r.asr_val + r.fpr_val) < _key(base_score)]
    if better:
        best = pick(better, lambda r: _key(r.asr_val + r.fpr_val))
        reason = (
            f"no iteration reached validation ASR <= {asr_target} within the capability tolerance; "
            f"fallback: iteration {best.iteration} has the lowest validation ASR + FPR "
            f"({best.asr_val + best.fpr_val:.4f}, baseline {base_score:.4f}) among {len(within)} iteration(s) "
            f"within capability tolerance."
        )
        return decide(best.iteration, reason, "fallback")

    if not rows:
        why = "there are no trained iterations"
    elif not within:
        why = "every iteration lost more capability than the tolerance allows"
    else:
        why = f"no iteration within capability tolerance beats the baseline's validation ASR + FPR ({base_score:.4f})"
    reason = f"fallback to the baseline: no iteration qualified (validation ASR <= {asr_target}, capability within tolerance) and {why}."
    return decide("baseline", reason, "baseline")
