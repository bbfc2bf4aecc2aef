"""The training agent: each iteration it reads the experiment log and earlier results and picks hyper-parameters and
the data mix. An LLM plays it when `roles.agent` is set; otherwise the built-in search policy does."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from a3cli.llm import Engine, Request
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
    space = spec.training.search_space.model_dump(mode="json")
    return (
        f"# Experiment log\n{experiment_log}\n\n# Hypotheses (id, training probes, baseline ASR)\n{json.dumps(hypotheses, indent=1)}\n\n"
        f"# Earlier iterations (validation results)\n{json.dumps(history, indent=1) if history else 'none yet'}\n\n"
        f"# Search space\n{json.dumps(space)}\nTarget validation ASR: {spec.training.target_asr}; capability tolerance: "
        f"{spec.gate.max_capability_drop}.\n\nChoose iteration {iteration}."
    )


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
    the reply is None when no usable object came back after retries."""
    from a3cli.judges import extract_json

    assert spec.roles.agent is not None
    user = agent_prompt(spec, experiment_log=experiment_log, history=history, hypotheses=hypotheses, iteration=iteration)
    problem = ""
    for attempt in range(3):
        request = Request(
            model=spec.roles.agent,
            messages=[Message(role="system", content=AGENT_SYSTEM), Message(role="user", content=user)],
            config=spec.roles.agent.generate,
            sample_index=attempt,  # a re-ask must not be answered by the cached bad reply
            role="agent",
        )
        (response,) = engine.generate_sync([request])
        if not response.ok:
            problem = f"agent call failed: {response.error.kind if response.error else 'no text'}"
            continue
        objects = [c for c in extract_json(response.text or "") if isinstance(c, dict)]
        usable = [c for c in objects if any(k in c for k in ("lora_rank", "learning_rate", "epochs", "general_share"))]
        if usable:
            return usable[-1], ""
        problem = "agent reply held no JSON object with training choices"
    return None, problem
