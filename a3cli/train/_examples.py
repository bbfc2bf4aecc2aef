"""Training examples and their tokenisation: loss only on the final assistant reply and its end-of-turn token, or, for
an example with `avoid`, only on the first tokens of a reply the model must not start (unlikelihood).

An example with a `prefill` (a probe that forces the start of the reply) is trained with the prefill in place: the
assistant turn is the prefill followed by the reply, the prefill is part of the prompt (no loss on it) and the loss
covers only what follows, tokenised as generation sees it (the prompt and the prefill tokenised together, then the
continuation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from a3cli.errors import A3Error, InfrastructureError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SFTExample(BaseModel):
    """One conversation whose last message is the assistant reply to learn, or, with `avoid`, a conversation ending on
    the user turn and a reply the model should not begin (its first tokens' probability is pushed down).

    `weight` is a sampling weight (relative within its source group), not a loss weight. With `prefill`, the final
    assistant message starts with the prefill (the whole turn as said) and only what follows it is learned; an `avoid`
    reply is then what must not follow the prefill.
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0.0)
    source: Literal["harmful", "benign", "general"]
    hypothesis_id: str | None = None
    avoid: str | None = Field(None, min_length=1, description="a reply not to start; messages then end on the user turn")
    prefill: str | None = Field(None, min_length=1, description="the forced start of the assistant turn: in the prompt, not learned")

    @model_validator(mode="after")
    def _ends_with_reply(self) -> SFTExample:
        prompt = self.messages if self.avoid is not None else self.messages[:-1]
        if self.avoid is None and self.messages[-1].role != "assistant":
            raise ValueError("the last message must be the assistant reply to learn")
        if self.avoid is not None and self.messages[-1].role != "user":
            raise ValueError("an example with `avoid` ends on the user turn the avoided reply would answer")
        if not any(m.role == "user" for m in prompt):
            raise ValueError("the conversation needs a user message before the reply")
        if self.prefill is not None and self.avoid is None:
            reply = self.messages[-1].content
            if not reply.startswith(self.prefill) or not reply[len(self.prefill) :].strip():
                raise ValueError("with `prefill`, the assistant reply must start with the prefill and continue after it")
        return self

    def conversation(self) -> list[dict[str, str]]:
        """The messages with the reply whose tokens carry the loss (the avoided one, after any prefill, for an `avoid`
        example)."""
        messages = [m.model_dump() for m in self.messages]
        if self.avoid is None:
            return messages
        return messages + [{"role": "assistant", "content": (self.prefill or "") + self.avoid}]


def row_prefill(row: dict[str, Any]) -> str | None:
    """The forced reply start of an expect/train_sft.jsonl row, checked against its reply: rows written before a3 kept
    the prefill in the assistant turn lack it, and training them would teach the reply without the prefix it follows."""
    prefill = row.get("prefill") or None
    messages = row.get("messages") or []
    last = messages[-1] if messages else {}
    last = last if isinstance(last, dict) else last.model_dump()
    if prefill and last.get("role") == "assistant" and not str(last.get("content", "")).startswith(prefill):
        raise InfrastructureError(
            f"expect/train_sft.jsonl row {row.get('probe_id') or row.get('key') or '?'} has a prefill its reply does not start "
            "with: it was written by an older a3. Re-run `a3 expect` (or `a3 run`), which keeps the prefill in the reply"
        )
    return prefill


class TokenizationError(A3Error):
    """A chat template or an example that cannot be tokenised with an exact reply boundary."""

    exit_code = 2


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # -100 outside the supervised reply span
    prompt_tokens_dropped: int  # left-truncation of the prompt
    avoid: bool = False  # the labels are the first tokens of a reply not to start (unlikelihood, not likelihood)

    @property
    def n_supervised(self) -> int:
        return sum(1 for x in self.labels if x != -100)

    def __len__(self) -> int:
        return len(self.input_ids)


IGNORE = -100


def _end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Tokens that can close an assistant turn: the eos token(s) and every added special token.

    The reply region of a rendering is cut after the first of these, which drops template trailers such as the
    newline ChatML writes after `<|im_end|>`."""
    ids: set[int] = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    ids.update(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
    for tid, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(tok, "special", False):
            ids.add(int(tid))
    pad = getattr(tokenizer, "pad_token_id", None)
    if isinstance(pad, int) and pad != eos:
        ids.discard(pad)
    return ids


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise TokenizationError("the tokenizer's chat template did not render to text")
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    # The chat template writes any BOS itself; add_special_tokens=True would double it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_example(example: SFTExample, tokenizer: Any, max_length: int, avoid_tokens: int = 3) -> TokenizedExample:
    """Render `example` with the tokenizer's chat template and mark the reply tokens as labels.

    The boundary is the rendering of the prompt with `add_generation_prompt=True`; it must be a prefix of the full
    rendering, as text and as tokens, or this raises (a template that rewrites earlier turns, e.g. one that strips
    reasoning, cannot be trained on safely this way). Over-long examples lose prompt tokens from the left; the reply is
    never cut, and a reply that leaves no room for a prompt token raises. An `avoid` example keeps only the first
    `avoid_tokens` tokens of the avoided reply: whether a reply starts as a refusal is decided there."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise TokenizationError("the tokenizer has no chat template; a3 trains chat models only")
    messages = example.conversation()
    # A prefill belongs to the prompt: generation renders the prompt, appends the prefill verbatim and continues.
    prompt_text = _render(tokenizer, messages[:-1], generation_prompt=True) + (example.prefill or "")
    full_text = _render(tokenizer, messages, generation_prompt=False)
    if not full_text.startswith(prompt_text):
        what = "prompt and the prefill" if example.prefill else "prompt (with the generation prompt)"
        raise TokenizationError(
            f"the chat template's rendering of the {what} is not a prefix of the rendering of the whole conversation, so "
            "the reply boundary is ambiguous"
        )
    prompt_ids = _encode(tokenizer, prompt_text)
    if example.prefill:
        # As generation sees it: the prompt with its prefill tokenised together, the continuation after it.
        full_ids = prompt_ids + _encode(tokenizer, full_text[len(prompt_text) :])
    else:
        full_ids = _encode(tokenizer, full_text)
    boundary = len(prompt_ids)
    if full_ids[:boundary] != prompt_ids:
        raise TokenizationError(
            "the prompt's tokens are not a prefix of the conversation's tokens (the tokenizer merges across the reply "
            "boundary); cannot mark the reply exactly"
        )
    if boundary == 0:
        raise TokenizationError("the chat template renders an empty prompt")
    # Supervise the reply up to and including its end-of-turn token; a template with none keeps the whole remainder
    # less trailing whitespace-only tokens.
    eot = _end_of_turn_ids(tokenizer)
    end = None
    content_tokens_seen = False
    reply_text = messages[-1]["content"][len(example.prefill or "") :]
    for i in range(boundary, len(full_ids)):
        if full_ids[i] in eot:
            if content_tokens_seen or not reply_text.strip():
                end = i + 1
                break
            continue  # a special token that opens the reply (e.g. a header) is part of it
        content_tokens_seen = True
    if end is None:
        end = len(full_ids)
        while end > boundary and not tokenizer.decode(full_ids[end - 1 : end]).strip():
            end -= 1
    if end <= boundary:
        raise TokenizationError("the reply renders to no tokens")
    if example.avoid is not None:
        end = min(end, boundary + avoid_tokens)
    reply_len = end - boundary
    if reply_len >= max_length:
        raise TokenizationError(
            f"a reply of {reply_len} tokens does not fit max_length={max_length} with at least one prompt token; "
            "raise max_length or shorten the reply"
        )
    dropped = max(0, end - max_length)
    input_ids = full_ids[dropped:end]
    labels = [IGNORE] * (boundary - dropped) + full_ids[boundary:end]
    return TokenizedExample(input_ids=input_ids, labels=labels, prompt_tokens_dropped=dropped, avoid=example.avoid is not None)


def tokenize_examples(examples: list[SFTExample], tokenizer: Any, max_length: int, avoid_tokens: int = 3) -> list[TokenizedExample]:
    out = []
    for n, ex in enumerate(examples):
        try:
            out.append(tokenize_example(ex, tokenizer, max_length, avoid_tokens))
        except TokenizationError as e:
            raise TokenizationError(f"example {n} ({ex.source}): {e}") from None
    return out
