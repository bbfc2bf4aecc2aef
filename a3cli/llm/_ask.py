"""Asking a role for an answer a3 can use, and asking again with the reason when it cannot.

    answers = await ask(engine, spec.roles.generator, "generator", conversations, validate=parse_hypotheses)

`validate(text)` returns the usable value or raises `Unusable` saying what was wrong (the parse error, the missing
field, the value out of range). Then:
- a reply cut at its token limit (`finish_reason == "length"`) is never taken as complete: the same question goes out
  again with a larger limit, and an answer still cut after the last attempt is unusable;
- an unusable reply is re-asked with a correction turn that quotes the problem;
- a failed call (the engine has already retried it) is unusable at once.
Every re-ask bumps the sample index, so a cache never replays the bad answer. Re-asks and unusable answers are counted
per role on the engine's outcome meter; what the caller falls back to is its own to count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from a3cli.llm._outcomes import record_outcome
from a3cli.llm._types import Request, Response, Role
from a3cli.spec import Message, ModelRef, larger_limit, role_max_tokens

T = TypeVar("T")

MAX_REASKS = 2
DEFAULT_INSTRUCTION = "Answer again with only the JSON object, nothing else."


class Unusable(ValueError):
    """A reply that cannot be used. The message is shown to the model in the re-ask; `reason` is the short category
    counted per role (`unparseable`, `missing_field`, `out_of_range`, `refused`, `empty`, ...).

    `salvage`, when given, is what the caller will make of this reply if no re-ask does better (e.g. values pulled into
    range): the last attempt then returns it, counted as a fallback `<reason>_salvaged` rather than as unusable."""

    def __init__(self, message: str, reason: str = "unparseable", *, salvage: object = None):
        super().__init__(message)
        self.reason = reason
        self.salvage = salvage


@dataclass
class Answer(Generic[T]):
    """One conversation's outcome: the value, or why there is none (`reason` is the category, `problem` the detail)."""

    value: T | None
    reason: str | None = None
    problem: str | None = None
    text: str | None = None
    attempts: int = 0
    max_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def correction_turn(problem: str, instruction: str = DEFAULT_INSTRUCTION) -> Message:
    return Message(role="user", content=f"Your previous answer could not be used: {problem}. {instruction}")


async def ask(
    engine: Any,
    model: ModelRef,
    role: Role,
    conversations: Sequence[Sequence[Message]],
    validate: Callable[[str], T],
    *,
    max_reasks: int = MAX_REASKS,
    instruction: str = DEFAULT_INSTRUCTION,
    progress: str | None = None,
    chunk: int | None = None,
) -> list[Answer[T]]:
    """One Answer per conversation, in order (see the module docstring). `chunk` bounds the requests sent per batch."""
    base_limit = role_max_tokens(model.generate, role)
    answers: list[Answer[T]] = [Answer(value=None, reason="not_asked", max_tokens=base_limit) for _ in conversations]
    current = {i: list(c) for i, c in enumerate(conversations)}
    limits = dict.fromkeys(current, base_limit)
    for attempt in range(max_reasks + 1):
        if not current:
            break
        order = sorted(current)
        requests = [
            Request(
                model=model,
                messages=current[i],
                config=model.generate.model_copy(update={"max_tokens": limits[i]}),
                sample_index=attempt,
                role=role,
            )
            for i in order
        ]
        step = chunk or len(requests)
        responses: list[Response] = []
        for start in range(0, len(requests), step):
            responses += await engine.generate(requests[start : start + step], progress=progress)
        last = attempt == max_reasks
        nxt: dict[int, list[Message]] = {}
        for i, resp in zip(order, responses):
            answer = answers[i]
            answer.attempts, answer.max_tokens, answer.text = attempt + 1, limits[i], resp.text
            if resp.error is not None or resp.text is None:
                kind = resp.error.kind if resp.error is not None else "bad_response"
                detail = resp.error.message if resp.error is not None else "no text"
                answer.value, answer.reason, answer.problem = None, f"call_failed:{kind}", f"the {role} call failed ({kind}): {detail}"
                record_outcome(engine, "unusable", role, answer.reason)
                continue
            if resp.finish_reason == "length":
                answer.value, answer.reason = None, "length"
                answer.problem = f"the answer was cut off at its {limits[i]}-token limit (finish_reason length)"
                if last:
                    record_outcome(engine, "unusable", role, "length")
                else:
                    record_outcome(engine, "reasks", role, "length")
                    limits[i] = larger_limit(limits[i])
                    nxt[i] = current[i]  # the same question, room for a longer answer
                continue
            try:
                answer.value, answer.reason, answer.problem = validate(resp.text), None, None
            except Unusable as e:
                answer.value, answer.reason, answer.problem = None, e.reason, str(e)
                if last and e.salvage is not None:
                    answer.value, answer.reason = e.salvage, None  # type: ignore[assignment]
                    record_outcome(engine, "fallbacks", role, f"{e.reason}_salvaged")
                elif last:
                    record_outcome(engine, "unusable", role, e.reason)
                else:
                    record_outcome(engine, "reasks", role, e.reason)
                    nxt[i] = [*current[i], Message(role="assistant", content=resp.text), correction_turn(str(e), instruction)]
        current = nxt
    return answers
