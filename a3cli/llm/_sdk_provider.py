"""What the SDK-backed providers (OpenAI-compatible, Anthropic) share: a client pool per event loop, the endpoint
as the provider's identity in the cache key, and the API key looked up per request (never stored or logged)."""

from __future__ import annotations

from typing import Any, ClassVar

from a3cli.llm._clients import ClientPool, normalize_base_url
from a3cli.llm._provider import Provider, ProviderError
from a3cli.llm._secrets import MissingAPIKeyError, api_key
from a3cli.spec import ModelRef


class SDKProvider(Provider):
    default_base_url: ClassVar[str]

    def __init__(self) -> None:
        self._clients = ClientPool(self.make_client)

    @staticmethod
    def make_client(*, base_url: str, api_key: str, timeout: float) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self._clients.aclose()

    def base_url(self, ref: ModelRef) -> str:
        return normalize_base_url(ref.base_url or self.default_base_url)

    def identity(self, ref: ModelRef) -> dict[str, Any]:
        return {"base_url": self.base_url(ref)}

    def client(self, ref: ModelRef) -> Any:
        """The pooled client for this endpoint and key; a missing key is an `auth` error, like a rejected one."""
        try:
            key = api_key(ref)
        except MissingAPIKeyError as e:
            raise ProviderError("auth", str(e)) from None
        return self._clients.get(self.base_url(ref), key, ref.timeout_s)
