"""Judge interface, the role registry (`@judge("llm")`) and building the spec's judges.

A judge takes (conversation messages, reply) pairs and returns one Verdict per pair, batched and async. Role semantics
are applied here, once: the harmful judge's `positive` is an attack success and the refusal judge's `positive` is a
refusal. A judge type registered as detecting refusals only (refusal keywords) is wrapped in the harmful role to count
"not refused" as success; every other type is told its role and decides it itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal

from a3cli.judges._verdict import Verdict
from a3cli.llm._sync import run_sync
from a3cli.spec import JudgeDef, Message, ModelRef, Spec

JudgeRole = Literal["harmful", "refusal"]
JudgeItem = tuple[Sequence[Message], str]  # (the conversation the reply answers, the reply text incl. any prefill)


def render_conversation(messages: Sequence[Message]) -> str:
    """The conversation as one text for a judge's {prompt}: a lone user message verbatim, otherwise a transcript with
    every turn (the harm may be set up in earlier turns, so the last one alone is not enough)."""
    msgs = list(messages)
    if len(msgs) == 1 and msgs[0].role == "user":
        return msgs[0].content
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"[{names[m.role]}]: {m.content}" for m in msgs)


class Judge(ABC):
    """Scores replies. Subclasses are registered with @judge(type) and built from the spec's judge definitions."""

    name: str = "judge"

    @abstractmethod
    async def ajudge(self, items: Sequence[JudgeItem], *, progress: str | None = None) -> list[Verdict]:
        """One verdict per item, in order. Never raises for a bad reply or judge output: that is `unscored`."""

    def judge(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return run_sync(self.ajudge(items))


# What a judge type's `positive` means: "role" = whatever the role it is built for says (it is told the role);
# "refusal" = always a refusal, whatever the role (so it is inverted in the harmful role).
Detects = Literal["role", "refusal"]
_REGISTRY: dict[str, tuple[Callable[..., Judge], Detects]] = {}


def judge(kind: str, *, detects: Detects = "role") -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    """Register a judge factory for a spec judge `type`; it is called as factory(defn, role=, engine=, model=)."""

    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        if kind in _REGISTRY:
            raise ValueError(f"judge type {kind!r} is registered twice")
        _REGISTRY[kind] = (factory, detects)
        return factory

    return deco


def registered_judges() -> list[str]:
    return sorted(_REGISTRY)


class InvertedJudge(Judge):
    """Positive <-> negative of another judge (unscored stays unscored): "not refused" as attack success."""

    def __init__(self, inner: Judge):
        self.inner = inner
        self.name = f"{inner.name}[not refused]"

    async def ajudge(self, items: Sequence[JudgeItem], *, progress: str | None = None) -> list[Verdict]:
        return [v.inverted(self.name) for v in await self.inner.ajudge(items, progress=progress)]


def build_judge(defn: JudgeDef, *, role: JudgeRole, engine: Any = None, model: ModelRef | None = None) -> Judge:
    """The judge for `defn` in its role. `engine` and `model` (the spec's roles.judge) are needed by `llm` judges."""
    entry = _REGISTRY.get(defn.type)
    if entry is None:
        raise KeyError(f"no judge registered for type {defn.type!r} (known: {', '.join(registered_judges())})")
    factory, detects = entry
    built = factory(defn, role=role, engine=engine, model=model)
    if role == "harmful" and detects == "refusal":
        return InvertedJudge(built)
    return built


def spec_judges(spec: Spec, engine: Any = None) -> dict[JudgeRole, Judge]:
    """The spec's harmful and refusal judges, with role semantics applied."""
    return {
        "harmful": build_judge(spec.judges.harmful, role="harmful", engine=engine, model=spec.roles.judge),
        "refusal": build_judge(spec.judges.refusal, role="refusal", engine=engine, model=spec.roles.judge),
    }
