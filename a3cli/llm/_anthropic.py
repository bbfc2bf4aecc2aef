"""Claude through the official SDK's Messages API: system prompt as its own field, prefill as a final assistant turn.

The SDK (2.x, API version 2026-10-21) has no temperature/top_p/top_k parameters and the API rejects them, so sampling
settings are not sent; they still enter the cache key like every other GenerateConfig field.
"""

from __future__ import annotations

from typing import Any

from a3cli.llm._clients import http_client
from a3cli.llm._provider import Completion, ProviderError, register_provider
from a3cli.llm._sdk_errors import from_sdk_exception, short
from a3cli.llm._sdk_provider import SDKProvider
from a3cli.llm._types import Request, Usage

DEFAULT_BASE_URL = "https://api.anthropic.com"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


def _make_client(*, base_url: str, api_key: str, timeout: float) -> Any:
    import anthropic

    # max_retries=0: the engine owns retries. An explicit timeout also stops the SDK from refusing large max_tokens
    # for non-streaming calls (it only estimates one when left at its default).
    return anthropic.AsyncAnthropic(
        api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client(anthropic, timeout)
    )


@register_provider("anthropic")
class AnthropicProvider(SDKProvider):
    default_base_url = DEFAULT_BASE_URL
    make_client = staticmethod(_make_client)

    def __init__(self) -> None:
        # Imported here, before any request's timeout starts: importing the SDK takes a second or more.
        import anthropic.resources.messages
        import anthropic.types  # noqa: F401
        super().__init__()

    def quirks(self, ref: Any) -> list[str]:
        cfg = ref.generate
        note = (
            f"temperature and top_p are not sent (the Messages API of this SDK takes none), so the spec's temperature "
            f"{cfg.temperature:g} and top_p {cfg.top_p:g} are not applied: the model samples at its own default"
        )
        return [note]

    async def generate(self, request: Request) -> Completion:
        import anthropic

        ref = request.model
        client = self.client(ref)
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"]
        sent_prefill = None
        if request.prefill:
            # The API rejects a final assistant turn that ends in whitespace; send it trimmed and trim the reply to match.
            sent_prefill = request.prefill.rstrip()
            if sent_prefill:
                messages.append({"role": "assistant", "content": sent_prefill})
        kwargs: dict[str, Any] = {"model": ref.model, "messages": messages, "max_tokens": request.config.max_tokens}
        if system:
            kwargs["system"] = system
        if request.config.stop:
            kwargs["stop_sequences"] = request.config.stop
        try:
            message = await client.messages.create(**kwargs)
        except anthropic.AnthropicError as e:
            raise from_sdk_exception(e, anthropic) from None
        except ValueError as e:  # the body claimed JSON but did not parse
            raise from_sdk_exception(e, anthropic) from None
        return _parse(message, request.prefill, sent_prefill)


def _parse(message: Any, prefill: str | None, sent_prefill: str | None) -> Completion:
    from anthropic.types import Message

    if not isinstance(message, Message):
        raise ProviderError("bad_response", short(f"expected a JSON message, got {type(message).__name__}"))
    try:
        blocks = message.content
        text = "".join(b.text for b in blocks if getattr(b, "type", None) == "text")
        stop = message.stop_reason
        usage = Usage(
            input_tokens=int(getattr(message.usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(message.usage, "output_tokens", 0) or 0),
        )
    except (AttributeError, TypeError, ValueError):
        raise ProviderError("bad_response", short("the message lacks text content blocks")) from None
    if prefill and sent_prefill is not None and sent_prefill != prefill:
        # The model continued the trimmed prefill; drop the whitespace the caller's prefill already had.
        full = sent_prefill + text
        text = full[len(prefill) :] if full.startswith(prefill) else text.lstrip()
    if stop == "refusal":
        raise ProviderError("content_filter", "the API's safety system stopped the reply (stop_reason=refusal)", partial=Completion(text, stop, usage))
    if stop is None and not blocks:
        raise ProviderError("bad_response", "the message has neither content nor a stop reason")
    return Completion(text=text, finish_reason=_FINISH.get(stop, stop), usage=usage)
