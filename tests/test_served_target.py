"""A served target trained from its weights: where probes, checkpoints and capability are measured.

The probes of a served target go to its server; a trained adapter runs locally on `target.weights`, or, with
`serve_adapters`, on the server after vLLM's runtime adapter loading (`POST /v1/load_lora_adapter`, faked here as
vLLM documents it). The end-to-end path against a real server (`transformers serve`) is in test_real_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from a3cli.errors import InfrastructureError, UsageError
from a3cli.evaluate import evaluate_checkpoint
from a3cli.evaluate._served_adapter import served_adapter_name
from a3cli.llm import Engine
from a3cli.spec import ModelRef, Spec
from tests.fakes import FakeOpenAIServer, fake_openai  # noqa: F401
from tests.fakes.heldout_splits import write_heldout_splits


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv("A3_CACHE_DIR", str(tmp_path / "a3-cache"))


@pytest.fixture(scope="module")
def tiny_weights_and_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from peft import LoraConfig, get_peft_model

    from a3cli.train._tiny import tiny_chat_model

    root = tmp_path_factory.mktemp("served-weights")
    model, tok = tiny_chat_model()
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(root / "adapter")
    return root / "model", root / "adapter"


def _spec(server: FakeOpenAIServer, weights: Path | None, **target: object) -> Spec:
    ref = {"provider": "openai", "model": "served-name", "base_url": server.base_url, "max_retries": 0,
           "generate": {"max_tokens": 8}, **({"weights": str(weights)} if weights else {}), **target}
    return Spec.model_validate({
        "spec_version": 1,
        "attack": {"name": "x", "key": "served", "description": "x"},
        "seed": {"prompt": "harmful-request", "bad_reply": "sure"},
        "target": ref,
        "judges": {"harmful": {"type": "refusal_keywords", "min_reply_chars": 0}, "refusal": {"type": "refusal_keywords", "min_reply_chars": 0}},
    })


def test_spec_rules_for_weights() -> None:
    with pytest.raises(ValueError, match="`weights` applies only to provider `openai`"):
        ModelRef(provider="local", model="m", weights="w")
    with pytest.raises(ValueError, match="`serve_adapters` needs `weights`"):
        ModelRef(provider="openai", model="m", serve_adapters=True)
    served = ModelRef(provider="openai", model="name", base_url="http://h/v1", weights="org/w", revision="abc", dtype="bfloat16")
    local = served.trainable()
    assert local is not None and (local.provider, local.model, local.revision, local.dtype) == ("local", "org/w", "abc", "bfloat16")
    assert ModelRef(provider="openai", model="hosted").trainable() is None


def test_checkpoint_of_a_served_target_runs_locally_on_its_weights(
    tmp_path: Path, fake_openai: FakeOpenAIServer, tiny_weights_and_adapter: tuple[Path, Path]  # noqa: F811
) -> None:
    weights, adapter = tiny_weights_and_adapter
    fake_openai.reply = lambda body: "I'm sorry, but I can't help with that request."
    spec = _spec(fake_openai, weights)
    run = write_heldout_splits(tmp_path / "run", per_split=2)
    with Engine(tmp_path / "c.sqlite") as engine:
        served = evaluate_checkpoint(spec, run, engine, capability=False, out_dir=tmp_path / "served")
        assert fake_openai.count == 8 and served.provider == "openai" and served.model == "served-name"
        base = evaluate_checkpoint(spec, run, engine, capability=False, out_dir=tmp_path / "base", like_checkpoints=True)
        tuned = evaluate_checkpoint(spec, run, engine, adapter=str(adapter), capability=False, out_dir=tmp_path / "tuned")
    assert fake_openai.count == 8  # the base measured like the checkpoints, and the checkpoint itself: both local
    assert (base.provider, base.model, base.adapter) == ("local", str(weights), None)
    assert (tuned.provider, tuned.model, tuned.adapter) == ("local", str(weights), str(adapter)) and tuned.adapter_fingerprint
    assert any("probes answered locally" in n for n in tuned.notes)
    assert any("probes answered through" in n for n in served.notes)


def test_checkpoint_through_a_server_that_loads_adapters(
    tmp_path: Path, fake_openai: FakeOpenAIServer, tiny_weights_and_adapter: tuple[Path, Path]  # noqa: F811
) -> None:
    weights, adapter = tiny_weights_and_adapter
    fake_openai.reply = lambda body: f"I'm sorry, I can't help with that ({body['model']})."
    spec = _spec(fake_openai, weights, serve_adapters=True)
    run = write_heldout_splits(tmp_path / "run", per_split=2)
    with Engine(tmp_path / "c.sqlite") as engine:
        tuned = evaluate_checkpoint(spec, run, engine, adapter=str(adapter), capability=False, out_dir=tmp_path / "tuned")
        again = evaluate_checkpoint(spec, run, engine, adapter=str(adapter), capability=False, out_dir=tmp_path / "again")
    name = served_adapter_name(tuned.adapter_fingerprint or "")
    assert fake_openai.lora_requests[0] == {"lora_name": name, "lora_path": str(adapter.resolve())}
    assert len(fake_openai.lora_requests) == 2 and fake_openai.loaded_adapters == {name: str(adapter.resolve())}  # "already loaded" is fine
    chats = [r.body for r in fake_openai.requests]
    assert len(chats) == 8 and {b["model"] for b in chats} == {name}  # every probe went to base + adapter on the server
    assert (tuned.provider, tuned.model, tuned.adapter) == ("openai", name, str(adapter))
    assert again.validation.asr.rate == tuned.validation.asr.rate and again.usage.by_role["target"].cached == 8


def test_a_server_that_cannot_load_adapters_is_an_infrastructure_error(
    tmp_path: Path, tiny_weights_and_adapter: tuple[Path, Path]
) -> None:
    weights, adapter = tiny_weights_and_adapter
    with FakeOpenAIServer() as server:
        spec = _spec(server, weights, serve_adapters=True, base_url=server.base_url.replace("/v1", "/nope/v1"))
        run = write_heldout_splits(tmp_path / "run", per_split=1)
        with Engine(tmp_path / "c.sqlite") as engine, pytest.raises(InfrastructureError, match="--enable-lora"):
            evaluate_checkpoint(spec, run, engine, adapter=str(adapter), capability=False, out_dir=tmp_path / "x")


def test_training_needs_weights_for_a_hosted_target(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    from a3cli.stages.train import run_train

    spec = _spec(fake_openai, None)
    with pytest.raises(UsageError, match="Set target.weights"):
        run_train(spec, tmp_path / "run", Engine(tmp_path / "c.sqlite"))
