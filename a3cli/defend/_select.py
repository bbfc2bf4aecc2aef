"""Which candidate a defence keeps: the training selection rule (`a3cli.train.select_checkpoint`), so a defence and a
fine-tune are chosen the same way — ASR at or below `training.target_asr` on validation and OOD first, then the
lowest mean FPR (ties: lower mean ASR, then the earlier candidate); when none qualifies, the lowest mean ASR + FPR
that beats the baseline. Capability is not measured for prompt and in-context defences, so that criterion is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from a3cli.defend._score import rate_value
from a3cli.probes import SplitMetrics
from a3cli.spec import Spec
from a3cli.train import IterationResult, select_checkpoint

RULE = (
    "training selection rule (a3cli.train.select_checkpoint): ASR <= training.target_asr on validation and OOD first, "
    "then the lowest mean FPR (ties: lower mean ASR, then the earlier candidate); if none qualifies, the lowest mean "
    "ASR + FPR that beats the baseline; unscored-only rates count as 1.0"
)


def as_iteration(index: int, validation: SplitMetrics, ood: SplitMetrics) -> IterationResult:
    return IterationResult(
        iteration=index,
        asr_val=rate_value(validation.asr),
        asr_ood=rate_value(ood.asr),
        fpr_val=rate_value(validation.fpr),
        fpr_ood=rate_value(ood.fpr),
    )


def choose(candidates: Sequence[tuple[SplitMetrics, SplitMetrics]], baseline: IterationResult, spec: Spec) -> tuple[int, str]:
    """Index of the kept candidate and a sentence saying why. When the rule prefers the undefended baseline, the
    candidate with the lowest mean ASR + FPR is still reported (the table must show what the defence achieves) and
    the note says that it does not beat the baseline."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    its = [as_iteration(i, v, o) for i, (v, o) in enumerate(candidates)]
    selection = select_checkpoint(
        baseline, its, asr_target=spec.training.target_asr, capability_tolerance=spec.gate.max_capability_drop
    )
    if selection.chosen != "baseline":
        return int(selection.chosen), f"kept by the {selection.rule} rule: {selection.reason}"
    best = min(its, key=lambda it: (round(it.asr + it.fpr, 9), round(it.asr, 9), it.iteration))
    return best.iteration, (
        f"no candidate beats the undefended baseline by the selection rule ({selection.reason}); "
        f"shown: candidate {best.iteration}, the lowest mean ASR + FPR"
    )
