"""The provider interface every model backend implements, and the registry that maps `ModelRef.provider` to it.

A provider makes one attempt at one request and either returns a `Completion` or raises `ProviderError` with a kind.
Retries, timeouts, concurrency, caching and accounting live in the engine, so every backend gets them the same way.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from a3cli.llm._types import ErrorKind, Request, Usage
from a3cli.spec import ModelRef

# Kinds worth another attempt: the same request may well succeed a moment later.
RETRYABLE: frozenset[str] = frozenset({"timeout", "rate_limit", "server", "connection", "bad_response"})


@dataclass
class Completion:
    """What one successful attempt produced. `text` excludes any prefill."""

    text: str
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)


class ProviderError(Exception):
    """One failed attempt. `message` must already be free of secrets (providers build it with `scrub`).

    `partial` carries what came back when the failure is a verdict about the content (a content-filter stop), so the
    caller can see it; `retry_after` is the server's requested wait in seconds.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        partial: Completion | None = None,
    ):
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.partial = partial

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Provider(ABC):
    """One backend. The engine makes one instance per provider name and passes each request's ModelRef along."""

    name: ClassVar[str] = ""
    # False for providers whose replies must not be cached (scripted replies are free and their script may change).
    cacheable: ClassVar[bool] = True
    # False where a timeout cannot stop the work (local generation runs in a thread shared by a whole batch).
    enforce_timeout: ClassVar[bool] = True

    @abstractmethod
    async def generate(self, request: Request) -> Completion:
        """Make one attempt; raise ProviderError on failure."""

    def identity(self, ref: ModelRef) -> dict[str, Any]:
        """What besides the request itself decides the output, for the cache key (endpoint, weights fingerprint).

        May do blocking I/O (fingerprinting); the engine calls it once per distinct ModelRef per batch.
        """
        return {}

    def quirks(self, ref: ModelRef) -> list[str]:
        """How this backend departs from `ref`'s settings for this model (sampling it cannot honour, ...), in sentences;
        what it learned from the server's answers so far included. Reports that compare models record them."""
        return []

    def max_in_flight(self, ref: ModelRef) -> int:
        return ref.concurrency

    def limiter_key(self, ref: ModelRef) -> tuple[Any, ...]:
        """Requests sharing a key share one concurrency limit."""
        return (self.name, ref.base_url, ref.model, self.max_in_flight(ref))

    async def aclose(self) -> None:
        """Release clients bound to the running event loop."""


_REGISTRY: dict[str, type[Provider]] = {}
P = TypeVar("P", bound=type[Provider])


def register_provider(name: str) -> Callable[[P], P]:
    """Class decorator: `@register_provider("openai")` makes the class the backend for `ModelRef(provider="openai")`."""

    def wrap(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise TypeError(f"@register_provider({name!r}) must decorate a Provider subclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def provider_class(name: str) -> type[Provider]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"No provider {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def registered_providers() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # The built-in providers register themselves on import; their SDKs are imported lazily inside them.
    from a3cli.llm import _anthropic, _local, _openai, _scripted  # noqa: F401


def render_conversation(request: Request) -> str:
    """A plain rendering of the whole conversation (used by scripted rules and in logs)."""
    lines = [f"{m.role}: {m.content}" for m in request.messages]
    if request.prefill:
        lines.append(f"assistant (prefill): {request.prefill}")
    return "\n".join(lines)


def request_seed(request: Request) -> int:
    """A 63-bit seed from everything that defines a request, so a sample is the same whenever it is drawn again."""
    import hashlib

    payload = json.dumps(
        [
            [[m.role, m.content] for m in request.messages],
            request.prefill,
            request.config.model_dump(mode="json"),
            request.sample_index,
        ],
        sort_keys=True,
        ensure_ascii=False,
    )
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big") >> 1
