"""Turn the official SDKs' exceptions into ProviderErrors with a kind, a scrubbed message and the server's Retry-After.

The openai and anthropic SDKs are generated from one template and share exception names: APITimeoutError (a subclass
of APIConnectionError), APIConnectionError, APIStatusError (with `.status_code` and `.response`), and
APIResponseValidationError. A JSON body that does not parse surfaces as a plain ValueError from `response.json()`.
"""

from __future__ import annotations

import email.utils
import json
import time
from types import ModuleType
from typing import Any

from a3cli.llm._provider import ProviderError
from a3cli.llm._secrets import scrub
from a3cli.llm._types import ErrorKind

_MAX_MESSAGE = 600


def short(text: str) -> str:
    text = scrub(" ".join(text.split()))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, then `retry-after` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def status_kind(status: int) -> ErrorKind:
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 409 or status >= 500:  # 409: lock timeouts the SDKs also retry; 529: Anthropic overloaded
        return "server"
    return "invalid_request"


def _root_cause(e: BaseException) -> BaseException:
    """The innermost exception: explicit causes first, then implicit context unless it was suppressed (`from None`)."""
    seen = {id(e)}
    while True:
        nxt = e.__cause__ if e.__cause__ is not None else (None if e.__suppress_context__ else e.__context__)
        if nxt is None or id(nxt) in seen:
            return e
        seen.add(id(nxt))
        e = nxt


def from_sdk_exception(e: BaseException, sdk: ModuleType) -> ProviderError:
    """Classify an exception raised by `sdk.AsyncOpenAI/AsyncAnthropic(...).create(...)`."""
    if isinstance(e, sdk.APIConnectionError):
        root = _root_cause(e)
        # The SDK's aiohttp transport maps every aiohttp.ClientConnectionError (a dropped connection included) to a
        # connect *timeout*, so the root cause decides: only a real timeout is a timeout.
        if isinstance(e, sdk.APITimeoutError) and (root is e or isinstance(root, TimeoutError) or "Timeout" in type(root).__name__):
            return ProviderError("timeout", "the request timed out")
        detail = f": {type(root).__name__}: {root}" if root is not e else ""
        return ProviderError("connection", short(f"connection failed{detail}"))
    if isinstance(e, sdk.APIResponseValidationError):
        return ProviderError("bad_response", short(f"HTTP {e.status_code}: the response did not match the API schema"), status=e.status_code)
    if isinstance(e, sdk.APIStatusError):
        status = e.status_code
        return ProviderError(
            status_kind(status),
            short(f"HTTP {status}: {e.message}"),
            status=status,
            retry_after=retry_after_seconds(getattr(e.response, "headers", None)),
        )
    if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)):
        return ProviderError("bad_response", short(f"the response body is not valid JSON ({e})"))
    return ProviderError("other", short(f"unexpected failure in the SDK: {e}"))
