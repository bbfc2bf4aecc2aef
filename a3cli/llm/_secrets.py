"""API keys: read from the environment variable a ModelRef names, at call time, and kept out of every text a3 writes.

Every key value read in this process is remembered (in memory only) so `scrub` can remove it from SDK exception text,
which may echo request headers or a proxy's error page.
"""

from __future__ import annotations

import os
import re
import threading

from a3cli.errors import A3Error
from a3cli.spec import ModelRef

REDACTED = "[REDACTED]"

_seen: set[str] = set()
_seen_lock = threading.Lock()

# Things that look like credentials even when we never read them ourselves (another variable, a proxy's own token).
_PATTERNS = [
    re.compile(r"(?i)(authorization|x-api-key|api[-_]?key|proxy-authorization)([\"']?\s*[:=]\s*[\"']?)(bearer\s+|basic\s+)?[^\s\"',;}]+"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"\b(sk-|sk_|pk-|xai-|gsk_|hf_|AIza|ghp_|key-)[A-Za-z0-9_\-]{8,}"),
]

# Conventional variables the SDKs themselves fall back to, used when a spec names none.
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# Sent to a custom endpoint that was given no key variable; the SDKs insist on some string.
NO_KEY = "no-key"


class MissingAPIKeyError(A3Error):
    """The environment variable that should hold an API key is unset or empty. Names the variable, never a value.
    Exit 3: the spec is fine, this machine's environment is not."""

    exit_code = 3

    def __init__(self, env: str, provider: str, model: str):
        super().__init__(
            f"The environment variable {env} is not set; it should hold the API key for {provider} model {model!r}. "
            f"Export it (export {env}=...) or point `api_key_env` at the variable that holds the key."
        )
        self.env = env


def remember_secret(value: str) -> None:
    if len(value) >= 6:
        with _seen_lock:
            _seen.add(value)


def api_key(ref: ModelRef) -> str:
    """The key for `ref`, read now from the variable it names (or the provider's conventional one)."""
    if ref.api_key_env is None and ref.base_url:
        # A custom endpoint named without a key variable (vLLM, Ollama, a local proxy): send no real key. Falling back
        # to OPENAI_API_KEY here would hand the user's OpenAI key to whatever server base_url points at.
        return NO_KEY
    env = ref.api_key_env or DEFAULT_KEY_ENV.get(ref.provider)
    value = os.environ.get(env, "").strip() if env else ""
    if not value:
        raise MissingAPIKeyError(env or "<none>", ref.provider, ref.model)
    remember_secret(value)
    return value


def scrub(text: str) -> str:
    """`text` with every key read in this process and anything credential-shaped replaced by [REDACTED]."""
    with _seen_lock:
        seen = sorted(_seen, key=len, reverse=True)
    for value in seen:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(_redact_match, text)
    return text


def _redact_match(m: re.Match[str]) -> str:
    if m.re is _PATTERNS[0]:
        return f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}"
    return REDACTED
