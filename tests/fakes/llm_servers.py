"""Fake OpenAI-compatible and Anthropic-compatible servers on 127.0.0.1, programmable per test.

    with FakeOpenAIServer(latency_s=0.05) as server:       # or the `fake_openai` / `fake_anthropic` fixtures
        server.reply = lambda body: "I can't help with that."  # body: the request JSON
        server.add_faults("429", Fault("500"), "drop")     # the next three requests fail so, in order
        server.fault_rates = {"429": 0.05, "500": 0.05}     # and then at random (seeded)
        ref = server.model_ref(api_key_env="MY_KEY")        # a ModelRef pointing at this server
        ...
        server.count, server.prompts()                      # what reached the server

`FakeOpenAIServer(fixed_sampling_models={"o3-mini"})` answers those models' requests that carry a temperature or top_p
other than 1 with OpenAI's HTTP 400 (param "temperature", code "unsupported_value"), as its reasoning models do.

Fault kinds: "429" (with Retry-After; answered at once, as by a rate limiter; the others after `latency_s`), "500", "503", "529", "400", "401", "echo_headers" (401 whose body repeats the
request headers, credentials included, like a careless proxy), "hang" (never answers), "drop" (closes the connection
without a response), "malformed" (200, JSON content type, invalid JSON), "text_body" (200 text/html),
"content_filter" (OpenAI finish_reason content_filter / Anthropic stop_reason refusal), "no_choices" (valid JSON
without the reply fields).

`spawn_fake_server(...)` runs one in a child process (for benchmarks, so the server does not share the GIL); configure
it with plain values, read its request count with `.count`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.fakes._http import HttpReply, HttpRequest, ThreadedHttpServer

FAULT_KINDS = (
    "429", "500", "503", "529", "400", "401", "echo_headers", "hang", "drop", "malformed", "text_body",
    "content_filter", "no_choices",
)


@dataclass
class Fault:
    kind: str
    retry_after: str | None = "1"  # Retry-After header of a 429 (seconds); None for no header
    retry_after_ms: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    fault: str | None = None


def message_text(content: Any) -> str:
    """Text of a message's content: a str, or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def last_user(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            return message_text(m.get("content"))
    return ""


def echo_reply(body: dict[str, Any]) -> str:
    return f"echo: {last_user(body)}"


class FakeLLMServer(ABC):
    api: ClassVar[str] = ""
    path: ClassVar[str] = ""
    url_suffix: ClassVar[str] = ""

    def __init__(
        self,
        *,
        reply: Callable[[dict[str, Any]], str] = echo_reply,
        latency_s: float = 0.0,
        fault_rates: dict[str, float] | None = None,
        retry_after: str | None = "1",
        seed: int = 0,
        require_key: str | None = None,
    ):
        self.reply = reply
        self.latency_s = latency_s
        self.fault_rates: dict[str, float] = dict(fault_rates or {})
        self.retry_after = retry_after
        self.fault_fn: Callable[[int, dict[str, Any]], Fault | str | None] | None = None
        self.require_key = require_key
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.peak_in_flight = 0  # most requests being handled at once
        self.loaded_adapters: dict[str, str] = {}  # vLLM-style runtime LoRA adapters (OpenAI fake only): name -> path
        self.lora_requests: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._http = ThreadedHttpServer(self._handle)

    # ------------------------------------------------------------------------------------------------ control

    def start(self) -> FakeLLMServer:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_suffix}"

    def model_ref(self, **fields: Any) -> Any:
        from a3cli.spec import ModelRef

        fields.setdefault("model", "fake-model")
        return ModelRef(provider=self.api, base_url=self.base_url, **fields)

    def add_faults(self, *faults: Fault | str) -> None:
        with self._lock:
            self._faults.extend(f if isinstance(f, Fault) else Fault(f) for f in faults)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.peak_in_flight = self.in_flight
        self.fault_rates.clear()
        self.fault_fn = None

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def prompts(self) -> list[str]:
        """The last user message of every request received, in arrival order."""
        with self._lock:
            return [last_user(r.body) for r in self.requests]

    # ------------------------------------------------------------------------------------------------ serving

    def _pick_fault(self, index: int, body: dict[str, Any]) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
        if self.fault_fn is not None:
            f = self.fault_fn(index, body)
            if f is not None:
                return f if isinstance(f, Fault) else Fault(f)
        if self.fault_rates:
            x = self._rng.random()
            for kind, rate in self.fault_rates.items():
                if x < rate:
                    return Fault(kind, retry_after=self.retry_after)
                x -= rate
        return None

    async def _handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> HttpReply | None:
        if request.path.startswith("/__"):
            return self._control(request)
        if request.method == "POST" and request.path == "/v1/load_lora_adapter" and self.api == "openai":
            return self._load_lora(request)
        if request.method != "POST" or request.path.split("?")[0] != self.path:
            return _json(404, {"error": {"message": f"no route {request.method} {request.path}"}})
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _json(400, {"error": {"message": "request body is not JSON"}})
        with self._lock:
            index = len(self.requests)
            record = Recorded(request.path, request.headers, body)
            self.requests.append(record)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            rejected = self.rejection(body)
            if rejected is not None:
                record.fault = "rejected"
                return rejected
            fault = self._pick_fault(index, body)
            record.fault = fault.kind if fault else None
            # A rate limiter turns a request away before any model work, so a 429 comes back at once; everything
            # else (replies, server errors, hangs, drops) happens after the model's latency.
            if self.latency_s and not (fault and fault.kind == "429"):
                await asyncio.sleep(self.latency_s)
            if self.require_key is not None and self.require_key not in _credentials(request.headers) and fault is None:
                fault = Fault("401")
            if fault is None:
                return _json(200, self.success(body, self.reply(body)))
            return await self._fault(fault, request, body, writer)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _load_lora(self, request: HttpRequest) -> HttpReply:
        """vLLM's runtime adapter loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True): 200 once per name, then 400."""
        body = json.loads(request.body or b"{}")
        name, path = body.get("lora_name"), body.get("lora_path")
        with self._lock:
            self.lora_requests.append(body)
            if not name or not path:
                return HttpReply(400, b'{"detail": "lora_name and lora_path are required"}', "application/json")
            if name in self.loaded_adapters:
                return HttpReply(400, f"The lora adapter '{name}' has already been loaded.".encode(), "text/plain")
            self.loaded_adapters[name] = path
        return HttpReply(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain")

    async def _fault(self, fault: Fault, request: HttpRequest, body: dict[str, Any], writer: asyncio.StreamWriter) -> HttpReply | None:
        kind = fault.kind
        if kind == "hang":
            await asyncio.sleep(3600)
            return None
        if kind == "drop":
            writer.transport.abort()
            return None
        if kind == "429":
            headers = {}
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = fault.retry_after_ms
            reply = self.error(429, "rate_limit_error", "Rate limit reached, slow down")
            reply.headers = headers
            return reply
        if kind in ("500", "503", "529"):
            return self.error(int(kind), "api_error", "Internal server error")
        if kind == "400":
            return self.error(400, "invalid_request_error", "bad request")
        if kind == "401":
            return self.error(401, "authentication_error", "invalid x-api-key")
        if kind == "echo_headers":
            return self.error(401, "authentication_error", f"bad credentials; you sent {json.dumps(request.headers)}")
        if kind == "malformed":
            return HttpReply(200, b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "trunc', "application/json")
        if kind == "text_body":
            return HttpReply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if kind == "no_choices":
            return _json(200, {"id": "x", "object": "chat.completion", "type": "message"})
        if kind == "content_filter":
            return _json(200, self.success(body, "", filtered=True))
        raise AssertionError(kind)

    def _control(self, request: HttpRequest) -> HttpReply:
        if request.path == "/__stats":
            with self._lock:
                faults = sum(1 for r in self.requests if r.fault)
            return _json(200, {"count": self.count, "faults": faults})
        if request.path == "/__reset":
            self.reset()
            return _json(200, {"ok": True})
        if request.path == "/__config":
            cfg = json.loads(request.body or b"{}")
            self.latency_s = float(cfg.get("latency_s", self.latency_s))
            self.fault_rates = dict(cfg.get("fault_rates", self.fault_rates))
            self.retry_after = cfg.get("retry_after", self.retry_after)
            return _json(200, {"ok": True})
        return _json(404, {"error": "unknown control"})

    # ------------------------------------------------------------------------------------------------ API shapes

    @abstractmethod
    def success(self, body: dict[str, Any], text: str, *, filtered: bool = False) -> dict[str, Any]:
        """The API's success body for reply `text`."""

    def rejection(self, body: dict[str, Any]) -> HttpReply | None:
        """A request the real API refuses for its content (not a fault): None to serve it."""
        return None

    def error(self, status: int, kind: str, message: str) -> HttpReply:
        return _json(status, {"error": {"message": message, "type": kind}})


def _json(status: int, obj: Any) -> HttpReply:
    return HttpReply(status, json.dumps(obj).encode())


def _credentials(headers: dict[str, str]) -> str:
    return headers.get("authorization", "") + " " + headers.get("x-api-key", "")


def _shape(text: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str]:
    """Apply stop sequences and a max_tokens limit (one token per word) like a real server; (text, finish)."""
    for s in stops:
        if s and s in text:
            return text[: text.index(s)], "stop"
    words = text.split(" ")
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


def _words(body: dict[str, Any]) -> int:
    n = sum(len(message_text(m.get("content")).split()) for m in body.get("messages") or [])
    return n + len(str(body.get("system") or "").split())


class FakeOpenAIServer(FakeLLMServer):
    api = "openai"
    path = "/v1/chat/completions"
    url_suffix = "/v1"
    _ids = 0
    # Models that, like OpenAI's reasoning models, refuse a temperature or top_p other than the default (HTTP 400 with
    # OpenAI's own error body).
    fixed_sampling_models: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *args: Any, fixed_sampling_models: set[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fixed_sampling_models = frozenset(fixed_sampling_models or ())

    def rejection(self, body: dict[str, Any]) -> HttpReply | None:
        if body.get("model") not in self.fixed_sampling_models:
            return None
        for param in ("temperature", "top_p"):
            if param in body and body[param] != 1:
                return _json(400, {"error": {
                    "message": f"Unsupported value: '{param}' does not support {body[param]} with this model. Only the default (1) value is supported.",
                    "type": "invalid_request_error", "param": param, "code": "unsupported_value",
                }})
        return None

    def success(self, body: dict[str, Any], text: str, *, filtered: bool = False) -> dict[str, Any]:
        stop = body.get("stop") or []
        text, finish = _shape(text, body.get("max_tokens") or body.get("max_completion_tokens"), [stop] if isinstance(stop, str) else stop)
        FakeOpenAIServer._ids += 1
        out_tokens = len(text.split())
        return {
            "id": f"chatcmpl-{FakeOpenAIServer._ids}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "content_filter" if filtered else finish}],
            "usage": {"prompt_tokens": _words(body), "completion_tokens": out_tokens, "total_tokens": _words(body) + out_tokens},
        }


class FakeAnthropicServer(FakeLLMServer):
    api = "anthropic"
    path = "/v1/messages"
    url_suffix = ""
    _ids = 0

    def success(self, body: dict[str, Any], text: str, *, filtered: bool = False) -> dict[str, Any]:
        text, finish = _shape(text, body.get("max_tokens"), body.get("stop_sequences") or [])
        FakeAnthropicServer._ids += 1
        stop_reason = "refusal" if filtered else {"stop": "end_turn", "length": "max_tokens"}[finish]
        return {
            "id": f"msg_{FakeAnthropicServer._ids}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake-model"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": _words(body), "output_tokens": len(text.split())},
        }

    def error(self, status: int, kind: str, message: str) -> HttpReply:
        return _json(status, {"type": "error", "error": {"type": kind, "message": message}})


_SERVERS: dict[str, type[FakeLLMServer]] = {"openai": FakeOpenAIServer, "anthropic": FakeAnthropicServer}


# ---------------------------------------------------------------------------------------------------- child process


def _serve_in_child(api: str, kwargs: dict[str, Any], conn: Any) -> None:
    server = _SERVERS[api](**kwargs).start()
    conn.send(server.port)
    conn.recv()  # blocks until the parent asks us to stop
    server.stop()


class SpawnedServer:
    """A fake server in a child process: base_url, count, configure(), stop()."""

    def __init__(self, api: str, **kwargs: Any):
        ctx = multiprocessing.get_context("spawn")
        self.api = api
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_in_child, args=(api, kwargs, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the fake server process did not start")
        self.port = self._conn.recv()
        self.base_url = f"http://127.0.0.1:{self.port}{_SERVERS[api].url_suffix}"

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    @property
    def count(self) -> int:
        return int(self._call("/__stats")["count"])

    def stats(self) -> dict[str, Any]:
        return self._call("/__stats")

    def configure(self, **cfg: Any) -> None:
        self._call("/__config", cfg)

    def reset(self) -> None:
        self._call("/__reset", {})

    def model_ref(self, **fields: Any) -> Any:
        from a3cli.spec import ModelRef

        fields.setdefault("model", "fake-model")
        return ModelRef(provider=self.api, base_url=self.base_url, **fields)

    def stop(self) -> None:
        try:
            self._conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_fake_server(api: str = "openai", **kwargs: Any) -> SpawnedServer:
    """Start a fake server in a child process (plain-value settings only: latency_s, fault_rates, retry_after, seed)."""
    return SpawnedServer(api, **kwargs)
