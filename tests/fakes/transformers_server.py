"""A real OpenAI-compatible server for tests: `transformers serve` on 127.0.0.1 with a local model folder.

    with TransformersServer(model_dir) as server:      # or the session fixture in tests/test_real_server.py
        ref = server.model_ref(generate={"max_tokens": 32})

What the tests rely on (transformers 5.x, measured here): `transformers serve [FORCE_MODEL] --host --port` needs the
`serving` extra (FastAPI, Uvicorn); with a model given it loads it before answering and then serves only that model:
a request must name it exactly (the folder path), anything else is HTTP 400. Endpoints: POST /v1/chat/completions
(non-streaming and SSE), GET /v1/models, GET /health ({"status": "ok"}). Requests are generated one at a time
(no continuous batching on CPU), `max_tokens` maps to max_new_tokens, temperature 0 is greedy, and
`finish_reason` is "length" when the reply used all max_tokens (also when its last token was the end-of-turn token).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

STARTUP_TIMEOUT_S = 180.0


def serving_available() -> str | None:
    """None when `transformers serve` can run here, else why not (for a skip message)."""
    for module in ("transformers", "fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"`transformers serve` needs {module}: pip install 'a3[serving]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TransformersServer:
    def __init__(self, model_dir: str | Path, *, threads: int = 1, log_path: Path | None = None):
        self.model_dir = str(Path(model_dir).resolve())
        self.port = free_port()
        self.threads = threads
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def model_ref(self, **fields: Any) -> Any:
        from a3cli.spec import ModelRef

        return ModelRef(provider="openai", model=self.model_dir, base_url=self.base_url, **fields)

    def start(self) -> Self:
        cmd = [
            sys.executable, "-c", "from transformers.cli.transformers import main; main()",
            "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--dtype", "float32",
            "--log-level", "warning", "--default-seed", "0",
        ]
        # One thread by default: on a small shared machine an oversubscribed torch is several times slower (measured
        # here under load: 50 SmolLM2 tokens in 12 s with 1 thread, 44 s with 2).
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(self.threads), "TOKENIZERS_PARALLELISM": "false"}
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode} before answering; log: {self.log_tail()}")
            if self._healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer /health within {STARTUP_TIMEOUT_S:.0f} s; log: {self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts down cleanly on SIGTERM
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log kept)"
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
