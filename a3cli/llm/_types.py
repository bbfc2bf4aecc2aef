"""One request type and one response type for every model call in a3 (target, generator, judge, expected, agent)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from a3cli.spec import GenerateConfig, Message, ModelRef, default_max_tokens

Role = Literal["target", "generator", "judge", "expected", "agent", "redteam"]

ErrorKind = Literal[
    "timeout", "rate_limit", "server", "connection", "bad_response", "content_filter", "auth", "invalid_request", "other"
]


class Request(BaseModel):
    """A single chat completion. `config` is the effective sampling (the model's defaults merged with overrides)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelRef
    messages: list[Message] = Field(min_length=1)
    config: GenerateConfig
    prefill: str | None = Field(None, description="Forced start of the assistant reply; the reply text excludes it.")
    sample_index: int = Field(0, ge=0, description="Distinguishes repeated samples of one prompt at temperature > 0.")
    role: Role = Field("target", description="For usage accounting and the default token limit; not part of the cache key.")

    @model_validator(mode="before")
    @classmethod
    def _role_token_limit(cls, data: Any) -> Any:
        """A config that leaves max_tokens out gets its role's default here, so the cache key and every provider
        see a concrete limit."""
        if not isinstance(data, dict):
            return data
        config, role = data.get("config"), data.get("role", "target")
        if isinstance(config, GenerateConfig) and config.max_tokens is None:
            return {**data, "config": config.model_copy(update={"max_tokens": default_max_tokens(role)})}
        if isinstance(config, dict) and config.get("max_tokens") is None:
            return {**data, "config": {**config, "max_tokens": default_max_tokens(role)}}
        return data


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class CallError(BaseModel):
    """Why a call finally failed. Callers must handle it; it is never an empty or 'safe' reply. No secrets inside."""

    kind: ErrorKind
    message: str
    status: int | None = None
    attempts: int = 1


class Response(BaseModel):
    text: str | None = None
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    error: CallError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def make_request(
    model: ModelRef,
    messages: str | list[Message] | list[dict[str, str]],
    *,
    prefill: str | None = None,
    sample_index: int = 0,
    role: Role = "target",
    **overrides: object,
) -> Request:
    """A Request whose config is the model's own `generate` settings with `overrides` (temperature=..., ...) applied.

    `messages` is a list of messages, or a str for a single user turn.
    """
    if isinstance(messages, str):
        msgs = [Message(role="user", content=messages)]
    else:
        msgs = [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
    config = GenerateConfig.model_validate({**model.generate.model_dump(), **overrides})
    return Request(model=model, messages=msgs, config=config, prefill=prefill, sample_index=sample_index, role=role)
