"""Any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, OpenRouter, llama.cpp) through the official SDK.

OpenAI's reasoning models (o1, o3, o4, gpt-5 families) accept only the default temperature and top_p: known names are
sent without them, and any other model whose server rejects them (HTTP 400 naming the parameter) is asked again at
once without them and remembered, so no call fails for it. Either way the quirk is recorded (`quirks`), for the
reports that compare models, since such a model samples at its default whatever the spec says.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from a3cli.llm._clients import http_client
from a3cli.llm._provider import Completion, ProviderError, register_provider
from a3cli.llm._sdk_errors import from_sdk_exception, short
from a3cli.llm._sdk_provider import SDKProvider
from a3cli.llm._types import Request, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# OpenAI's reasoning families, bare or behind a router's "openai/" prefix; gpt-5-chat models take a temperature.
_FIXED_SAMPLING_NAMES = re.compile(r"^(?:openai/)?(?:o1|o3|o4|gpt-5(?!-chat))(?:[-.]|$)", re.IGNORECASE)
_SAMPLING_PARAMS = ("temperature", "top_p")
_REJECTS = re.compile(r"unsupported|not supported|does not support|only the default", re.IGNORECASE)


def fixed_sampling_model(model: str) -> bool:
    """A model name of OpenAI's reasoning families, which reject a temperature or top_p other than the default."""
    return bool(_FIXED_SAMPLING_NAMES.match(model))


def _rejects_sampling(e: Any) -> bool:
    """An HTTP 400 that rejects temperature or top_p (OpenAI: param "temperature", code "unsupported_value")."""
    if getattr(e, "status_code", None) != 400:
        return False
    body = getattr(e, "body", None)
    param = body.get("param") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        param = body["error"].get("param", param)
    text = str(getattr(e, "message", "") or e)
    named = param in _SAMPLING_PARAMS or any(f"'{p}'" in text or f'"{p}"' in text for p in _SAMPLING_PARAMS)
    return bool(named and _REJECTS.search(text))


def _make_client(*, base_url: str, api_key: str, timeout: float) -> Any:
    import openai

    # max_retries=0: the engine owns retries, so back-off, Retry-After and the attempt count are the same everywhere.
    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, http_client=http_client(openai, timeout))


@register_provider("openai")
class OpenAIProvider(SDKProvider):
    default_base_url = DEFAULT_BASE_URL
    make_client = staticmethod(_make_client)

    def __init__(self) -> None:
        # Imported here, before any request's timeout starts: importing the SDK takes a second or more.
        import openai.resources.chat
        import openai.types.chat  # noqa: F401
        super().__init__()
        self._fixed_sampling: set[tuple[str, str]] = set()  # (endpoint, model) pairs whose server rejected sampling params

    def quirks(self, ref: Any) -> list[str]:
        """What this endpoint and model do differently from the spec's settings, in sentences."""
        out = []
        cfg = ref.generate
        key = (self.base_url(ref), ref.model)
        if fixed_sampling_model(ref.model) or key in self._fixed_sampling:
            how = "a reasoning model of OpenAI's o1/o3/o4/gpt-5 families" if fixed_sampling_model(ref.model) else "its server rejected them (HTTP 400)"
            asked = f"temperature {cfg.temperature:g}, top_p {cfg.top_p:g}"
            out.append(
                f"sampled at the server's default temperature and top_p, not the spec's ({asked}): {how}; they were left "
                "out of every request. Its reasoning tokens count against max_tokens, so a short limit can cut a reply to nothing (unscored)"
            )
        return out

    async def generate(self, request: Request) -> Completion:
        import openai
        from openai.types.chat import ChatCompletion

        ref = request.model
        base_url = self.base_url(ref)
        client = self.client(ref)
        messages: list[dict[str, str]] = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefill:
            # Servers that continue a final assistant turn (OpenRouter, llama.cpp) treat this as a prefill; others
            # answer after it.
            messages.append({"role": "assistant", "content": request.prefill})
        cfg = request.config
        kwargs: dict[str, Any] = {"model": ref.model, "messages": messages, "temperature": cfg.temperature, "top_p": cfg.top_p}
        # OpenAI's own API wants max_completion_tokens (reasoning models reject max_tokens); compatible servers know max_tokens.
        official = urlsplit(base_url).hostname == "api.openai.com"
        kwargs["max_completion_tokens" if official else "max_tokens"] = cfg.max_tokens
        if cfg.stop:
            kwargs["stop"] = cfg.stop
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed + request.sample_index  # repeated samples must not share a seed
        key = (base_url, ref.model)
        if fixed_sampling_model(ref.model) or key in self._fixed_sampling:
            for param in _SAMPLING_PARAMS:
                kwargs.pop(param)
        try:
            # client.post is what chat.completions.create calls for a non-streaming request, minus its recursive
            # TypedDict transform of the (already plain JSON) body, which cost ~40 % of the client's CPU per call.
            completion = await client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
        except openai.APIStatusError as e:
            if not (_rejects_sampling(e) and any(p in kwargs for p in _SAMPLING_PARAMS)):
                raise from_sdk_exception(e, openai) from None
            # A model that takes only the default sampling: remembered, and this request sent again without it.
            self._fixed_sampling.add(key)
            for param in _SAMPLING_PARAMS:
                kwargs.pop(param, None)
            try:
                completion = await client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
            except openai.OpenAIError as e2:
                raise from_sdk_exception(e2, openai) from None
            except ValueError as e2:
                raise from_sdk_exception(e2, openai) from None
        except openai.OpenAIError as e:
            raise from_sdk_exception(e, openai) from None
        except ValueError as e:  # the body claimed JSON but did not parse
            raise from_sdk_exception(e, openai) from None
        return _parse(completion, request)


def _parse(completion: Any, request: Request) -> Completion:
    from openai.types.chat import ChatCompletion

    if not isinstance(completion, ChatCompletion):
        # The SDK returns the body as text when the content type is not JSON.
        raise ProviderError("bad_response", short(f"expected a JSON chat completion, got {type(completion).__name__}"))
    try:
        choice = completion.choices[0]
        message = choice.message
        text = message.content if message.content is not None else getattr(message, "refusal", None)
        finish = choice.finish_reason
        usage = Usage(
            input_tokens=int(getattr(completion.usage, "prompt_tokens", 0) or 0),
            output_tokens=int(getattr(completion.usage, "completion_tokens", 0) or 0),
        )
    except (AttributeError, IndexError, TypeError, ValueError):
        raise ProviderError("bad_response", short("the chat completion lacks choices[0].message")) from None
    if not isinstance(text, str):
        text = None
    if text is not None and request.prefill and text.startswith(request.prefill):
        text = text[len(request.prefill) :]  # some servers echo the prefill with the continuation
    if finish == "content_filter":
        raise ProviderError(
            "content_filter", "the server's content filter stopped the reply", partial=Completion(text or "", finish, usage)
        )
    if text is None:
        raise ProviderError("bad_response", f"the chat completion has no text content (finish_reason={finish!r})")
    return Completion(text=text, finish_reason=finish, usage=usage)
