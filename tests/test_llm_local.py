"""The local provider on a tiny random-weight Llama saved to disk: batching, sampling, stops, adapters, sharing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from a3cli.llm import Engine, _local, make_request
from a3cli.spec import ModelRef
from tests.fakes.tiny_chat_dir import save_tiny_chat_model


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv("A3_CACHE_DIR", str(tmp_path / "user-cache"))  # the fingerprint memo lives there


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-llama"), seed=0)


def _save_adapter(base: Path, out: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)  # a "re-trained" adapter: same path, different weights
    peft_model.save_pretrained(out)


def _ref(model: Path, **kw: object) -> ModelRef:
    return ModelRef(provider="local", model=str(model), device="cpu", **kw)  # type: ignore[arg-type]


def test_batched_equals_one_at_a_time(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = _local._run_batch
    monkeypatch.setattr(_local, "_run_batch", lambda loaded, reqs: sizes.append(len(reqs)) or real(loaded, reqs))
    prompts = ["How do I bake bread?", "Explain photosynthesis to a child, please", "add two numbers", "Hello"]

    def requests(batch_size: int) -> list:
        ref = _ref(tiny_model, batch_size=batch_size)
        greedy = [make_request(ref, p, max_tokens=10) for p in prompts]
        sampled = [make_request(ref, p, max_tokens=10, temperature=0.9, top_p=0.95, sample_index=k) for p in prompts[:2] for k in range(2)]
        return greedy + sampled

    engine = Engine(tmp_path / "c.sqlite", mode="no_cache")
    batched = engine.generate_sync(requests(4))
    assert sizes == [4, 4]
    sizes.clear()
    single = engine.generate_sync(requests(1))
    assert sizes == [1] * 8
    assert all(r.ok for r in batched + single)
    # Greedy rows match; sampled rows draw from their own seeded generator, so the batch they share does not matter.
    assert [r.text for r in batched] == [r.text for r in single]
    assert batched[4].text != batched[5].text  # two sample indices, two different samples
    assert all(r.usage.output_tokens > 0 and r.usage.input_tokens > 5 for r in batched)


def test_stops_max_tokens_and_prefill(tiny_model: Path, tmp_path: Path) -> None:
    ref = _ref(tiny_model, batch_size=8)
    engine = Engine(tmp_path / "c.sqlite", mode="no_cache")
    free = engine.generate_sync([make_request(ref, "Hello", max_tokens=24)])[0]
    assert free.ok and free.finish_reason in {"length", "stop"}
    stop_at = free.text[3:6]
    assert stop_at.strip(), free.text  # random weights still give some text to cut
    out = engine.generate_sync(
        [
            make_request(ref, "Hello", max_tokens=24, stop=[stop_at]),
            make_request(ref, "Hello", max_tokens=3),
            make_request(ref, "Hello", max_tokens=24, prefill="Sure, "),
        ]
    )
    assert out[0].text == free.text[: free.text.index(stop_at)] and out[0].finish_reason == "stop"
    assert out[1].finish_reason == "length" and out[1].usage.output_tokens == 3
    assert out[2].ok and not out[2].text.startswith("Sure, ")  # the reply excludes the prefill ...
    assert out[2].text != free.text  # ... which the model did see


def test_retrained_adapter_at_same_path_misses(tiny_model: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    _save_adapter(tiny_model, adapter, seed=1)
    ref = _ref(tiny_model, adapter=str(adapter))
    req = [make_request(ref, "Hello", max_tokens=8)]
    engine = Engine(tmp_path / "c.sqlite")
    first = engine.generate_sync(req)[0]
    assert first.ok and not first.cached
    assert engine.generate_sync(req)[0].cached
    time.sleep(0.01)  # a distinct mtime for the rewritten file
    _save_adapter(tiny_model, adapter, seed=2)
    retrained = engine.generate_sync(req)[0]
    assert not retrained.cached and retrained.text != first.text  # new weights were loaded, not the shared old model
    base = engine.generate_sync([make_request(_ref(tiny_model), "Hello", max_tokens=8)])[0]
    assert not base.cached


def test_generation_leaves_the_event_loop_free(tiny_model: Path, tmp_path: Path) -> None:
    ref = _ref(tiny_model, batch_size=8)

    async def main() -> tuple[float, float]:
        engine = Engine(tmp_path / "c.sqlite", mode="no_cache")
        # load, and run one batch of the measured shape, outside the measurement: first-use work (lazy imports inside
        # generate, which hold the GIL) stalled the loop for ~0.2 s once and made this test flaky
        await engine.generate([make_request(ref, f"warm-up {i}", max_tokens=64) for i in range(8)])
        gaps, start = [], time.monotonic()
        last = start
        task = asyncio.ensure_future(engine.generate([make_request(ref, f"prompt {i}", max_tokens=64) for i in range(8)]))
        while not task.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert all(r.ok for r in task.result())
        await engine.aclose()
        return max(gaps), time.monotonic() - start

    max_gap, total = asyncio.run(main())
    assert max_gap < total / 3  # one batch: generating on the loop would stall it for the whole time


def test_refs_differing_in_plumbing_share_one_model(tiny_model: Path, tmp_path: Path) -> None:
    _local.unload_local_models()
    refs = [_ref(tiny_model, batch_size=2, concurrency=1), _ref(tiny_model, batch_size=8, concurrency=5, timeout_s=9)]
    out = Engine(tmp_path / "c.sqlite", mode="no_cache").generate_sync([make_request(r, "hi", max_tokens=4) for r in refs])
    assert all(r.ok for r in out) and out[0].text == out[1].text
    assert len(_local._models) == 1


def test_missing_model_is_a_call_error(tmp_path: Path) -> None:
    r = Engine(tmp_path / "c.sqlite").generate_sync([make_request(_ref(tmp_path / "nowhere"), "x")])[0]
    assert r.error is not None and r.error.kind == "invalid_request" and "nowhere" in r.error.message
