"""Which candidate a defence keeps: the training selection rule (`a3cli.train.select_checkpoint`), so a defence and a
fine-tune are chosen the same way and on the same split — validation ASR at or below `training.target_asr` first,
then the lowest validation FPR (ties: lower ASR, then the earlier candidate); when none qualifies, the lowest
validation ASR + FPR that beats the baseline. OOD is measured for every candidate and reported, never read here.
Capability is not measured for prompt and in-context defences, so that criterion is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from a3cli.defend._score import rate_value
from a3cli.probes import SplitMetrics
from a3cli.spec import Spec
from a3cli.train import IterationResult, select_checkpoint

RULE = (
    "training selection rule (a3cli.train.select_checkpoint), validation split only: validation ASR <= "
    "training.target_asr first, then the lowest validation FPR (ties: lower ASR, then the earlier candidate); if none "
    "qualifies, the lowest validation ASR + FPR that beats the baseline; unscored-only rates count as 1.0. OOD is "
    "reported, never used to choose"
)


def as_iteration(index: int, validation: SplitMetrics) -> IterationResult:
    return IterationResult(iteration=index, asr=rate_value(validation.asr), fpr=rate_value(validation.fpr))


def choose(candidates: Sequence[SplitMetrics], baseline: IterationResult, spec: Spec) -> tuple[int, str]:
    """Index of the kept candidate and a sentence saying why. When the rule prefers the undefended baseline, the
    candidate with the lowest mean ASR + FPR is still reported (the table must show what the defence achieves) and
    the note says that it does not beat the baseline."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    its = [as_iteration(i, v) for i, v in enumerate(candidates)]
    selection = select_checkpoint(
        baseline, its, asr_target=spec.training.target_asr, capability_tolerance=spec.gate.max_capability_drop
    )
    if selection.chosen != "baseline":
        return int(selection.chosen), f"kept by the {selection.rule} rule: {selection.reason}"
    best = min(its, key=lambda it: (round(it.asr + it.fpr, 9), round(it.asr, 9), it.iteration))
    return best.iteration, (
        f"no candidate beats the undefended baseline by the selection rule ({selection.reason}); "
        f"shown: candidate {best.iteration}, the lowest validation ASR + FPR"
    )
