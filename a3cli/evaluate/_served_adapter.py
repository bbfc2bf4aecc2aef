"""Evaluating a trained LoRA adapter through the server that runs the target (`target.serve_adapters`).

vLLM loads adapters at run time when started with `--enable-lora` (and `--max-lora-rank` at least the adapter's
rank) and the environment variable `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`: `POST <base_url>/load_lora_adapter` with
`{"lora_name": ..., "lora_path": ...}` registers it, and requests naming `model: <lora_name>` then run base + adapter.
The name is derived from the adapter's content fingerprint, so a re-trained adapter gets a new name (and a cached
reply of an older adapter can never answer for it); loading a name that is already loaded is not an error.
The path must be one the server can read (the same machine, or a shared folder).
"""

from __future__ import annotations

from pathlib import Path

from a3cli.errors import InfrastructureError
from a3cli.llm._clients import normalize_base_url
from a3cli.llm._secrets import api_key, scrub
from a3cli.spec import ModelRef

ALREADY_LOADED = "already been loaded"


def served_adapter_name(fingerprint: str) -> str:
    return f"a3-lora-{fingerprint[:16]}"


def load_served_adapter(target: ModelRef, adapter: str | Path, fingerprint: str) -> ModelRef:
    """Ask the target's server to load `adapter`; returns the ModelRef whose requests run base + adapter there."""
    import httpx

    if target.base_url is None:
        raise InfrastructureError("target.serve_adapters needs target.base_url (the server that loads the adapters)")
    name = served_adapter_name(fingerprint)
    url = normalize_base_url(target.base_url) + "/load_lora_adapter"
    headers = {"Authorization": f"Bearer {api_key(target)}"}  # a placeholder when the spec names no key variable
    body = {"lora_name": name, "lora_path": str(Path(adapter).resolve())}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=target.timeout_s)
    except httpx.HTTPError as e:
        raise InfrastructureError(scrub(f"could not reach {url} to load the adapter: {type(e).__name__}: {e}")) from None
    if response.status_code >= 400 and ALREADY_LOADED not in response.text:
        hint = " (is the server vLLM started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True?)" if response.status_code == 404 else ""
        raise InfrastructureError(scrub(f"{url} refused to load adapter {name}: HTTP {response.status_code}: {response.text[:300]}{hint}"))
    return target.model_copy(update={"model": name, "weights": None, "serve_adapters": False})
