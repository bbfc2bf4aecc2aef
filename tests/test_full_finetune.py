"""Full fine-tuning (`training.method: full`) with the LoRA trainer's own loop, on a tiny random-weight Llama: the
memory estimate said before training, a whole model folder saved atomically, loadable and fingerprinted like any
model, the caller's model handed back unchanged, and `a3 train` / `a3 eval --model` on such a checkpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from a3cli.errors import UsageError
from a3cli.train import (
    SFTExample,
    TrainHyperparams,
    attach_lora,
    memory_estimate,
    read_train_result,
    tiny_chat_model,
    tiny_chat_tokenizer,
    train_checkpoint,
    train_full,
)

REPLIES = ["I can't help with that request.", "Mix flour, water, salt and yeast; knead and bake.", "Plants turn light into sugar."]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return tiny_chat_tokenizer()


def examples(n: int = 6) -> list[SFTExample]:
    return [
        SFTExample(
            messages=[{"role": "user", "content": f"Question {i}: tell me something."}, {"role": "assistant", "content": REPLIES[i % 3]}],
            source="benign",
        )
        for i in range(n)
    ]


def hp(**kw) -> TrainHyperparams:
    base = {
        "method": "full", "learning_rate": 3e-3, "max_steps": 25, "batch_size": 4, "general_share": 0.0, "warmup_ratio": 0.0,
        "lr_scheduler": "constant", "precision": "fp32",
    }
    return TrainHyperparams(**{**base, **kw})


def _state(model) -> dict[str, str]:
    return {n: hashlib.sha256(p.detach().numpy().tobytes()).hexdigest() for n, p in model.named_parameters()}


def test_full_fine_tuning_trains_every_weight_saves_a_model_and_hands_the_base_back(tok, tmp_path, caplog):
    from a3cli.assets import load_causal_lm, weights_fingerprint

    model, _ = tiny_chat_model(tok, seed=0, initializer_range=0.1)
    model.requires_grad_(False)  # as a caller that used it for inference might leave it
    before = _state(model)
    with caplog.at_level(logging.WARNING, logger="a3cli"):
        result = train_full(model, tok, examples(), hp(), tmp_path / "ckpt", progress=False)

    # The estimate was said before training, and recorded: weights + gradients + two AdamW moments.
    n = sum(p.numel() for p in model.parameters())
    est = result.memory_estimate
    assert est is not None and est.parameters == n and est.weights == 4 * n
    assert est.total == est.weights + est.gradients + est.optimizer_states == 16 * n and est.base_copy == 4 * n
    said = [r.getMessage() for r in caplog.records if "full fine-tuning of" in r.getMessage()]
    assert said and f"{n:,} parameters" in said[0] and "AdamW states" in said[0] and said[0] in result.notes

    # Every weight learned (the loss fell), and the caller's model came back bit-identical and frozen as it was.
    assert result.method == "full" and result.losses[-1] < 0.5 * result.losses[0]
    assert _state(model) == before and not any(p.requires_grad for p in model.parameters())

    # The folder is a whole model: it loads like any local model, with the trained weights.
    folder = tmp_path / "ckpt"
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_result.json"} <= {p.name for p in folder.iterdir()}
    assert not list(tmp_path.glob(".ckpt.tmp-*")) and read_train_result(folder).method == "full"
    loaded, loaded_tok = load_causal_lm(folder, device="cpu", dtype="float32")
    changed = [n for n, p in loaded.named_parameters() if not torch.equal(p, dict(model.named_parameters())[n])]
    assert len(changed) == len(before)  # every tensor moved, not only some
    ids = loaded_tok.apply_chat_template([{"role": "user", "content": "Question 1: tell me something."}], add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    with torch.no_grad():
        out = loaded.generate(ids, max_new_tokens=12, do_sample=False)
    assert "flour" in loaded_tok.decode(out[0, ids.shape[1]:])  # it learned the reply

    # Its fingerprint is content-only: the training record beside the weights does not enter it.
    fp = weights_fingerprint(folder)
    (folder / "train_result.json").write_text("{}")
    assert weights_fingerprint(folder) == fp


def test_full_fine_tuning_says_when_the_estimate_exceeds_free_memory(tok, tmp_path, monkeypatch, caplog):
    import a3cli.train._full as full

    monkeypatch.setattr(full, "free_memory", lambda device: 1024)
    model, _ = tiny_chat_model(tok, seed=0)
    with caplog.at_level(logging.WARNING, logger="a3cli"):
        result = train_full(model, tok, examples(2), hp(max_steps=1), tmp_path / "ckpt", progress=False)
    assert result.memory_estimate.available == 1024
    assert any("more than is free" in r.getMessage() and "training.method: lora" in r.getMessage() for r in caplog.records)
    assert memory_estimate(model, torch.device("cpu"), base_copy=False).base_copy == 0


def test_lora_layers_does_not_limit_full_fine_tuning(tok, tmp_path):
    """`training.lora_layers` says where LoRA goes; full fine-tuning still trains (and runs) every layer, and says the
    setting was unused, rather than caching the bottom layers' outputs as if they were frozen."""
    model, _ = tiny_chat_model(tok, seed=0, initializer_range=0.1)
    result = train_full(model, tok, examples(2), hp(max_steps=1, lora_layers=1), tmp_path / "ckpt", progress=False)
    assert result.frozen_layers_cached == 0
    assert any("lora_layers=1 unused" in n for n in result.notes), result.notes
    from a3cli.assets import load_causal_lm

    trained, _ = load_causal_lm(tmp_path / "ckpt", device="cpu", dtype="float32")
    before = dict(model.named_parameters())
    assert not torch.equal(trained.model.layers[0].self_attn.q_proj.weight, before["model.layers.0.self_attn.q_proj.weight"])


def test_full_and_lora_share_the_loss_and_the_unlikelihood_term(tok, tmp_path):
    """The same loop: identical first-step loss for the same model and data (the step before any update), and the
    unlikelihood term of `avoid` examples applied in full fine-tuning too."""
    data = examples(4) + [
        SFTExample(messages=[{"role": "user", "content": "Question 9: tell me something."}], avoid="I can't help", source="benign")
    ]
    model, _ = tiny_chat_model(tok, seed=1)
    full = train_checkpoint(model, tok, data, hp(max_steps=2, unlikelihood_weight=1.0), tmp_path / "full", progress=False)
    lora = train_checkpoint(model, tok, data, hp(method="lora", max_steps=2, unlikelihood_weight=1.0), tmp_path / "lora", progress=False)
    assert (tmp_path / "lora" / "adapter_config.json").is_file() and (tmp_path / "full" / "config.json").is_file()
    assert full.losses[0] == pytest.approx(lora.losses[0], rel=1e-5)  # LoRA's B starts at zero: same model at step 1
    assert full.avoid_losses and full.avoid_losses[0] == pytest.approx(lora.avoid_losses[0], rel=1e-5)
    assert full.draws_per_source == lora.draws_per_source


def test_full_fine_tuning_refuses_a_peft_model_and_a_4bit_spec(tok, tmp_path):
    from a3cli.spec import Training

    model, _ = tiny_chat_model(tok, seed=0)
    wrapped = attach_lora(model, TrainHyperparams(lora_rank=2, lora_alpha=4))
    with pytest.raises(UsageError, match="LoRA adapter attached"):
        train_full(wrapped, tok, examples(2), hp(max_steps=1), tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="full fine-tuning cannot update 4-bit"):
        Training(method="full", load_in_4bit=True)
    # full fine-tuning has its own, lower learning-rate range, and no rank to search
    space = Training(method="full").search_space_for_method()
    assert space.learning_rate == (1e-6, 5e-5) and space.lora_rank == [8]


# ------------------------------------------------------------------------------------------------- a3 train, a3 eval


def test_a3_train_with_method_full_keeps_model_checkpoints_and_a3_eval_measures_one(tmp_path, monkeypatch, capsys):
    import yaml

    from a3cli.assets import weights_fingerprint
    from a3cli.cli import run_cli
    from a3cli.llm import Engine
    from a3cli.rundir import RunDir
    from a3cli.spec import load_spec
    from a3cli.stages.pipeline import run_pipeline
    from tests.fakes.tiny_chat_dir import save_tiny_chat_model
    from tests.fakes.tiny_pipeline import tiny_pipeline_spec

    monkeypatch.setenv("A3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    model_dir = save_tiny_chat_model(tmp_path / "tiny-model")
    spec_path = tiny_pipeline_spec(tmp_path, model_dir)
    data = yaml.safe_load(spec_path.read_text())
    data["training"].update({"method": "full", "iterations": 1})
    data["capability"] = {"benchmarks": [{"task": "local_mmlu", "limit": 1}], "kl_prompts": 2, "batch_size": 16}
    spec_path.write_text(yaml.safe_dump(data))
    spec = load_spec(spec_path)
    run = RunDir.open(spec, runs_root=tmp_path / "runs")
    run_pipeline(spec_path, run, Engine(), ["generate", "split", "expect", "train"], announce=lambda _: None)

    ckpt = run.root / "train/iteration_1/checkpoint"
    assert (ckpt / "config.json").is_file() and not (run.root / "train/iteration_1/adapter").exists()
    train = json.loads((run.root / "train/iteration_1/train.json").read_text())
    assert train["method"] == "full" and train["memory_estimate"]["total"] > 0
    assert 1e-6 <= train["hyperparams"]["learning_rate"] <= 5e-5  # the full fine-tuning range
    result = json.loads((run.root / "train/iteration_1/result.json").read_text())
    assert result["model"] == str(ckpt) and result["model_fingerprint"] == weights_fingerprint(ckpt)
    assert result["kl_drift"] is not None  # drift from the base weights, like an adapter's
    best = json.loads((run.root / "train/best.json").read_text())
    assert best["method"] == "full" and best["adapter"] is None
    assert best["checkpoint"] in (None, "train/iteration_1/checkpoint")
    assert "full fine-tuning" in (run.root / "train/experiment_log.md").read_text()

    # `a3 eval --model <checkpoint folder>`: measured like any model, with the same fingerprint.
    capsys.readouterr()
    code = run_cli(["eval", str(spec_path), "--run", str(run.root), "--model", str(ckpt), "--no-capability", "--out", str(tmp_path / "ev")])
    assert code in (0, 1), capsys.readouterr().err
    ev = json.loads((tmp_path / "ev/result.json").read_text())
    assert ev["model_fingerprint"] == weights_fingerprint(ckpt) and ev["validation"]["n_harmful"] > 0
