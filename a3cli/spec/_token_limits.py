"""How many new tokens each role may write when its spec leaves `generate.max_tokens` out, and the floor below which a
role's structured answer is likely cut off (lint warns; a cut answer is re-asked with a larger limit, never used).

A target's reply is whatever the model says in its budget; the other roles answer in JSON (generator, agent, judge)
or write training data (expected), so a cut answer is unusable rather than short.
"""

from __future__ import annotations

from typing import Literal

from a3cli.spec._models import GenerateConfig, Spec

TokenRole = Literal["target", "generator", "judge", "expected", "agent", "redteam"]

# role -> (default max_tokens, floor). Defaults fit a verbose model's answer; floors are the least a typical answer needs.
ROLE_TOKENS: dict[str, tuple[int, int]] = {
    "target": (256, 1),
    "redteam": (256, 1),
    "judge": (1024, 128),  # {"reason": one or two sentences, "<verdict>": ...}; reasoning models think first
    "expected": (1024, 256),  # a complete helpful answer, or a refusal
    "agent": (2048, 512),  # hyper-parameters, per-hypothesis weights and the reasoning behind them
    "generator": (4096, 1024),  # a batch of hypotheses, or probes_per_hypothesis harmful/benign pairs
}
# Growth of the limit when an answer was cut at it, and the most a re-ask may ask for.
LENGTH_REASK_FACTOR = 2
LENGTH_REASK_CAP = 32768
PROBE_PAIR_TOKENS = 120  # a harmful probe and its benign twin, as JSON


def default_max_tokens(role: str) -> int:
    return ROLE_TOKENS.get(role, ROLE_TOKENS["target"])[0]


def role_max_tokens(config: GenerateConfig, role: str) -> int:
    """The effective limit: the spec's own value, or the role's default when the spec leaves it out."""
    return config.max_tokens if config.max_tokens is not None else default_max_tokens(role)


def larger_limit(current: int) -> int:
    """The limit a re-ask uses after an answer was cut at `current` tokens."""
    return min(LENGTH_REASK_CAP, max(current + 1, current * LENGTH_REASK_FACTOR))


def needed_tokens(spec: Spec, role: str) -> int:
    """The floor for `role` in this spec: what its answer typically needs (the generator's grows with the probes asked)."""
    floor = ROLE_TOKENS.get(role, ROLE_TOKENS["target"])[1]
    if role == "generator":
        floor = max(floor, 200 + spec.generation.probes_per_hypothesis * PROBE_PAIR_TOKENS)
    return floor
