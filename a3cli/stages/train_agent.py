"""The training agent: each iteration it reads the experiment log and earlier results and picks hyper-parameters and
the data mix. An LLM plays it when `roles.agent` is set; otherwise the built-in search policy does."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from a3cli.llm import Engine
from a3cli.spec import Message, Spec

AGENT_SYSTEM = """You are the training agent of a3, which repairs a safety failure in a language model with LoRA fine-tuning.
Each iteration you choose hyper-parameters and the data mix for the next fine-tune, from the experiment log and the
validation results of earlier iterations. Goals, in order: attack-success rate (ASR) on validation at or below the target;
capability (benchmark accuracy) within tolerance of the base model; false-refusal rate (FPR) as low as possible.
More harmful weight and higher learning rates lower ASR but raise FPR and capability loss; more benign weight lowers FPR;
a larger general share protects capability. Weight the hypotheses whose probes still succeed.
Answer with one JSON object and nothing else:
{"reasoning": "...", "lora_rank": int, "learning_rate": float, "epochs": int, "general_share": float,
 "hypothesis_weights": {"<hypothesis id>": {"harmful": float, "benign": float}}}"""


class HypothesisWeight(BaseModel):
    harmful: float = Field(1.0, ge=0.0, le=10.0)
    benign: float = Field(1.0, ge=0.0, le=10.0)


class TrainingChoice(BaseModel):
    """What one iteration trains with, and who chose it."""

    lora_rank: int
    lora_alpha: int
    learning_rate: float
    epochs: int
    general_share: float
    hypothesis_weights: dict[str, HypothesisWeight] = Field(default_factory=dict)
    chosen_by: Literal["agent", "search", "search (agent reply unusable)"]
    reasoning: str = ""
    clamped: list[str] = Field(default_factory=list, description="Agent values moved into the search space.")


def clamp_weights(raw: Any, hypothesis_ids: list[str]) -> tuple[dict[str, HypothesisWeight], list[str]]:
    """Per-hypothesis sampling weights from an agent reply, limited to known hypotheses and to [0, 10]."""
    weights: dict[str, HypothesisWeight] = {}
    changes: list[str] = []
    if not isinstance(raw, dict):
        return weights, ["hypothesis_weights is not an object; ignored"] if raw is not None else []
    for hid, w in raw.items():
        if hid not in hypothesis_ids:
            changes.append(f"unknown hypothesis {hid!r} ignored")
            continue
        if not isinstance(w, dict):
            changes.append(f"weights of {hid!r} are not an object; ignored")
            continue
        values = {}
        for side in ("harmful", "benign"):
            try:
                value = float(w.get(side, 1.0))
            except (TypeError, ValueError):
                changes.append(f"{hid}.{side} is not a number; 1 used")
                value = 1.0
            if not 0.0 <= value <= 10.0:
                changes.append(f"{hid}.{side} {value:g} -> {min(max(value, 0.0), 10.0):g}")
            values[side] = min(max(value, 0.0), 10.0)
        weights[hid] = HypothesisWeight(**values)
    return weights, changes


def agent_prompt(
    spec: Spec, *, experiment_log: str, history: list[dict[str, Any]], hypotheses: list[dict[str, Any]], iteration: int
) -> str:
    """The agent's user message. Everything in it comes from the generate log, the training split and validation
    results (history entries are `a3cli.stages.train.history_entry`): held-out figures never reach the agent."""
    space = spec.training.search_space_for_method().model_dump(mode="json", exclude={"full_learning_rate"})
    method = (
        "\nTraining method: full fine-tuning of every weight (lora_rank is not used; choose any listed value).\n"
        if spec.training.method == "full" else ""
    )
    return (
        f"# Experiment log\n{experiment_log}\n\n# Hypotheses (id, training probes, baseline ASR)\n{json.dumps(hypotheses, indent=1)}\n\n"
        f"# Earlier iterations (validation results)\n{json.dumps(history, indent=1) if history else 'none yet'}\n\n"
        f"# Search space\n{json.dumps(space)}\n{method}Target validation ASR: {spec.training.target_asr}; capability tolerance: "
        f"{spec.gate.max_capability_drop}.\n\nChoose iteration {iteration}."
    )


CHOICE_FIELDS = ("lora_rank", "lora_alpha", "learning_rate", "epochs", "general_share")


def out_of_space(raw: dict[str, Any], space: Any) -> list[str]:
    """The agent's values that are not numbers or lie outside the search space, said so it can correct them."""
    problems = []
    ranks = list(space.lora_rank)
    for key, kind in (("lora_rank", int), ("learning_rate", float), ("epochs", int), ("general_share", float)):
        if key not in raw:
            continue
        try:
            value = kind(raw[key]) if not isinstance(raw[key], bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None:
            problems.append(f"{key} {raw[key]!r} is not a number")
        elif key == "lora_rank":
            if value not in ranks:
                problems.append(f"lora_rank {value} is not one of {ranks}")
        else:
            lo, hi = getattr(space, key)
            if not lo <= value <= hi:
                problems.append(f"{key} {value:g} is outside [{lo:g}, {hi:g}]")
    return problems


def parse_agent_choice(text: str, space: Any) -> dict[str, Any]:
    """The agent's training choice as its raw JSON object; Unusable says what is missing or out of range (a choice
    still out of range after the re-asks is salvaged: the caller clamps it into the search space)."""
    from a3cli.judges import extract_json
    from a3cli.llm import Unusable

    values = extract_json(text)
    objects = [c for c in values if isinstance(c, dict)]
    if not objects:
        raise Unusable("it held no JSON object", "unparseable")
    usable = [c for c in objects if any(k in c for k in CHOICE_FIELDS)]
    if not usable:
        keys = sorted({k for c in objects for k in c})
        raise Unusable(f"the JSON has none of the fields {', '.join(CHOICE_FIELDS)} (keys found: {', '.join(keys) or 'none'})", "missing_field")
    problems = out_of_space(usable[-1], space)
    if problems:
        # Asked again with the ranges; if the agent insists, its values are clamped into the space (and listed).
        raise Unusable("; ".join(problems), "out_of_range", salvage=usable[-1])
    return usable[-1]


def ask_agent(
    spec: Spec,
    engine: Engine,
    *,
    experiment_log: str,
    history: list[dict[str, Any]],
    hypotheses: list[dict[str, Any]],
    iteration: int,
) -> tuple[dict[str, Any] | None, str]:
    """One LLM proposal as its raw JSON object (the caller clamps it into the search space). Returns (reply, problem);
    the reply is None when no usable object came back after the re-asks (a3cli.llm.ask: a cut answer is asked again
    with a larger limit, a wrong one with what was wrong)."""
    from a3cli.llm import ask, run_sync

    assert spec.roles.agent is not None
    space = spec.training.search_space_for_method()
    user = agent_prompt(spec, experiment_log=experiment_log, history=history, hypotheses=hypotheses, iteration=iteration)
    messages = [Message(role="system", content=AGENT_SYSTEM), Message(role="user", content=user)]
    [answer] = run_sync(
        ask(engine, spec.roles.agent, "agent", [messages], lambda text: parse_agent_choice(text, space), progress="train: agent")
    )
    if answer.value is not None:
        return answer.value, ""
    return None, f"{answer.reason} after {answer.attempts} attempt(s): {answer.problem}"
