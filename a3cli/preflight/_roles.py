"""Which models a command will call: the roles of the stages it runs, and of those only the stages not already done."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from a3cli.spec import LLMJudge, ModelRef, Spec


@dataclass(frozen=True)
class RoleUse:
    """One model a command will call: where the spec names it (`roles.judge`) and what for."""

    path: str
    ref: ModelRef
    purpose: str


def _llm_judges(spec: Spec) -> bool:
    return any(isinstance(j, LLMJudge) for j in (spec.judges.harmful, spec.judges.refusal))


def stage_roles(spec: Spec, stage: str, *, target: ModelRef | None = None) -> list[RoleUse]:
    """The models `stage` calls. `target` replaces the spec's target (`a3 eval --model/--adapter`)."""
    target = target or spec.target
    roles = spec.roles
    uses: list[RoleUse] = []

    def add(path: str, ref: ModelRef | None, purpose: str) -> None:
        if ref is not None:
            uses.append(RoleUse(path, ref, purpose))

    judge = roles.judge if _llm_judges(spec) else None
    if stage == "generate":
        add("target", target, "answers the probes")
        add("roles.generator", roles.generator, "writes hypotheses and probes")
        add("roles.judge", judge, "judges the replies")
    elif stage == "split":
        if spec.split.ood_method in ("auto", "llm"):
            add("roles.generator", roles.generator, "chooses the out-of-distribution hypotheses")
    elif stage == "expect":
        add("roles.expected", roles.expected, "writes the ideal replies")
        if roles.expected is not None:
            add("roles.judge", judge, "checks the ideal benign replies")
    elif stage in ("train", "defend"):
        add("target", target, "is fine-tuned and measured" if stage == "train" else "is measured under each defence")
        add("roles.agent", roles.agent, "chooses the next trial")
        add("roles.judge", judge, "judges the replies")
    elif stage == "eval":
        add("target", target, "is measured")
        add("roles.judge", judge, "judges the replies")
    elif stage == "judge-check":
        add("roles.judge", judge, "judges the labelled replies")
    elif stage in ("redteam", "loops"):  # loops: `a3 run --loops`, whose red-teamer always attacks the checkpoint
        rt = spec.redteam
        if rt.policy is not None:
            add("redteam.policy", rt.policy, "is trained as the red-teamer")
        elif target.provider == "local" or target.trainable() is None:
            add("target", target, "is trained as the red-teamer")
        else:
            add("target.weights", target.trainable(), "are trained as the red-teamer")
        if rt.mode == "attack" or stage == "loops":
            add("target", target, "answers the red-teamer's attacks")
            add("roles.judge", judge, "judges whether the attacks succeed")
    return uses


def roles_for(spec: Spec, stages: Sequence[str], *, target: ModelRef | None = None) -> list[RoleUse]:
    """Every model the stages call, each spec place once (the first purpose named)."""
    seen: dict[str, RoleUse] = {}
    for stage in stages:
        for use in stage_roles(spec, stage, target=target):
            seen.setdefault(use.path, use)
    return list(seen.values())
