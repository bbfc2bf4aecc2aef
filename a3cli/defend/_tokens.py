"""Prompt tokens a defence adds to every request: the price a prompt or in-context defence pays on each call.

Measured with the target's own tokenizer and chat template when the target runs locally (the difference between the
rendered prompt with and without the defence); estimated as characters / 4 for remote targets, and labelled so."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from a3cli.defend._types import AddedTokens
from a3cli.probes import Probe, target_messages
from a3cli.spec import Message, ModelRef

CHARS_PER_TOKEN = 4


@functools.lru_cache(maxsize=4)
def _local_tokenizer(model: str, revision: str | None) -> Any:
    from transformers import AutoTokenizer

    from a3cli.assets import resolve_local_model

    return AutoTokenizer.from_pretrained(str(resolve_local_model(model, revision=revision)))


class TokenCounter:
    """Counts prompt tokens for the target: its tokenizer when local, else characters / 4."""

    def __init__(self, target: ModelRef, tokenizer: Any | None = None):
        self.target = target
        if tokenizer is None and target.provider == "local":
            tokenizer = _local_tokenizer(target.model, target.revision)
        self.tokenizer = tokenizer

    @property
    def method(self) -> str:
        return "tokenizer" if self.tokenizer is not None else "estimated chars/4"

    def count(self, messages: Sequence[Message], prefill: str | None = None) -> float:
        if self.tokenizer is None:
            return (sum(len(m.content) for m in messages) + len(prefill or "")) / CHARS_PER_TOKEN
        text = self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], tokenize=False, add_generation_prompt=True
        )
        return float(len(self.tokenizer(text + (prefill or ""), add_special_tokens=False)["input_ids"]))

    def added(
        self,
        probes: Sequence[Probe],
        *,
        system_prefix: str | None = None,
        icl_for: Callable[[Probe], Sequence[Message]] | None = None,
    ) -> AddedTokens:
        """Mean over `probes` of (prompt tokens with the defence) - (prompt tokens without it)."""
        if not probes:
            return AddedTokens(per_request=0.0, method=self.method)  # type: ignore[arg-type]
        total = 0.0
        for p in probes:
            plain = self.count(target_messages(p), p.prefill)
            icl = list(icl_for(p)) if icl_for is not None else None
            defended = self.count(target_messages(p, system_prefix=system_prefix, icl_messages=icl), p.prefill)
            total += max(0.0, defended - plain)
        return AddedTokens(per_request=round(total / len(probes), 2), method=self.method)  # type: ignore[arg-type]
