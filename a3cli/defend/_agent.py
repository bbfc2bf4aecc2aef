"""Asking the agent LLM (`roles.agent`) for a JSON decision, validated, with the problem fed back on a re-ask."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from a3cli.judges import extract_json
from a3cli.llm import Request
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

    Returns (value, "") or (None, the last problem). A re-ask names the problem and uses a new sample index, so the
    cache cannot answer it with the same bad reply."""
    agent = spec.roles.agent
    if agent is None:
        raise ValueError("ask_agent_json needs roles.agent")
    config = agent.generate.model_copy(update={"max_tokens": max(agent.generate.max_tokens, AGENT_MIN_TOKENS)})
    problem = ""
    for attempt in range(ATTEMPTS):
        text = user if not problem else f"{user}\n\nYour previous answer could not be used: {problem}. Answer again with one valid JSON object."
        request = Request(
            model=agent,
            messages=[Message(role="system", content=system), Message(role="user", content=text)],
            config=config,
            sample_index=attempt,
            role="agent",
        )
        (response,) = engine.generate_sync([request])
        if not response.ok:
            problem = f"agent call failed ({response.error.kind if response.error else 'no text'})"
            continue
        problem = "the reply held no JSON object"
        for candidate in reversed(extract_json(response.text or "")):
            if not isinstance(candidate, dict):
                continue
            try:
                return validate(candidate), ""
            except (KeyError, TypeError, ValueError) as e:
                problem = f"the JSON object does not fit: {e}"
    return None, problem
