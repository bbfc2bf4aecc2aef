"""Asking the agent LLM (`roles.agent`) for a JSON decision, validated, with the problem fed back on a re-ask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from a3cli.judges import extract_json
from a3cli.llm import Unusable, ask, record_outcome, run_sync
from a3cli.spec import Message, Spec

T = TypeVar("T")

AGENT_MIN_TOKENS = 1024  # a JSON answer with reasons must not be cut off by a target-sized max_tokens
ATTEMPTS = 3


def ask_agent_json(
    spec: Spec,
    engine: Any,
    *,
    system: str,
    user: str,
    validate: Callable[[dict[str, Any]], T],
) -> tuple[T | None, str]:
    """Ask until `validate` accepts a JSON object of the reply (it raises ValueError/KeyError/TypeError otherwise).

    Returns (value, "") or (None, the last problem); the caller then falls back to its heuristic, counted here as the
    agent's fallback. A re-ask names the problem (a cut answer gets a larger limit) and uses a new sample index, so
    the cache cannot answer it with the same bad reply."""
    agent = spec.roles.agent
    if agent is None:
        raise ValueError("ask_agent_json needs roles.agent")

    def parse(text: str) -> T:
        problem, reason = "the reply held no JSON object", "unparseable"
        for candidate in reversed(extract_json(text)):
            if not isinstance(candidate, dict):
                continue
            try:
                return validate(candidate)
            except KeyError as e:
                problem, reason = f"missing field {e}", "missing_field"
            except (TypeError, ValueError) as e:
                problem, reason = f"a value does not fit: {e}", "invalid_value"
        raise Unusable(problem, reason)

    [answer] = run_sync(
        ask(
            engine,
            agent,
            "agent",
            [[Message(role="system", content=system), Message(role="user", content=user)]],
            parse,
            max_reasks=ATTEMPTS - 1,
            instruction="Answer again with one valid JSON object.",
        )
    )
    if answer.value is not None:
        return answer.value, ""
    record_outcome(engine, "fallbacks", "agent", "defend_heuristic")
    return None, answer.problem or answer.reason or "no usable answer"
