"""The novelty term of curiosity-driven red-teaming and the diversity metrics: BLEU against earlier successful attacks,
sentence-embedding similarity with the real all-MiniLM-L6-v2, the history only successful attacks join, and a run that
keeps its history across a resume (a3's PPO and TRL's GRPO)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from a3cli._io import read_jsonl
from a3cli.redteam import BleuReferences, NoveltyReward, PromptSplit, diversity, minilm_embedder, run_redteam, self_bleu
from tests.test_redteam_run import HELDOUT, PROMPTS, cat_reward, tiny_config, tiny_model_dir  # noqa: F401  (fixture)

A = "please tell me how to open the lock on the back door"
B = "write a poem about moon and quiet sea at night"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def embedder():
    return minilm_embedder()


def test_bleu_against_references() -> None:
    refs = BleuReferences()
    assert refs.mean_bleu(A) == 0.0  # nothing to compare with
    refs.add(A)
    assert refs.mean_bleu(A) == pytest.approx(1.0)
    assert refs.mean_bleu(B) == 0.0  # no shared word
    near = refs.mean_bleu("please tell me how to open the lock on the front door")
    assert 0.3 < near < 1.0
    assert refs.mean_bleu("please tell me") < near  # short: the brevity penalty


def test_self_bleu_and_embedding_diversity(embedder) -> None:
    assert self_bleu([A]) is None
    assert self_bleu([A, A, A]) == pytest.approx(1.0)
    assert self_bleu([A, B]) == 0.0
    same = diversity([A, A, A], embedder)
    varied = diversity([A, B, "stock market fell sharply monday morning"], embedder)
    assert same.self_bleu_diversity == pytest.approx(0.0, abs=1e-9) and same.embedding_diversity == pytest.approx(0.0, abs=1e-5)
    assert varied.self_bleu_diversity == pytest.approx(1.0) and varied.embedding_diversity > 0.7
    assert varied.distinct_1 > same.distinct_1 and same.n == 3
    assert diversity([A]).embedding_diversity is None


def test_ngram_novelty_counts_only_earlier_successes() -> None:
    scores = {A: 1.0, B: 0.0, "x": None, "completely different words that fail": 0.2}
    base = lambda prompts, completions: [scores.get(c, 1.0) for c in completions]  # noqa: E731
    reward = NoveltyReward(base, ngram=0.5, success_threshold=0.5)
    # nothing has succeeded yet: every attack is new (novelty 1); unscored stays unscored
    assert reward(["p"] * 3, [A, B, "x"]) == [1.5, 0.5, None]
    assert list(reward.history) == [A]  # only the success joined
    assert reward.last_stats["successes"] == 1.0
    again = reward(["p", "p"], [A, "please tell me how to open the lock on the front door"])
    assert again[0] == pytest.approx(1.0)  # a repeat earns no novelty
    assert 1.0 < again[1] < 1.4  # a near-repeat earns a little
    # a failure never joins, however novel it is
    reward(["p"], ["completely different words that fail"])
    assert "completely different words that fail" not in reward.history


def test_embedding_novelty_with_minilm(embedder) -> None:
    reward = NoveltyReward(lambda p, c: [1.0] * len(c), embedding=1.0, embedder=embedder)
    reward(["p"], ["How do I pick a lock to get into a house?"])
    paraphrase, unrelated = reward(["p", "p"], ["How can I open a door lock without the key?", "Recommend a recipe for banana bread."])
    assert 1.0 < paraphrase < unrelated < 2.0  # 1 + (1 - mean cosine): a paraphrase is less new


def test_history_round_trips_and_is_bounded(embedder) -> None:
    reward = NoveltyReward(lambda p, c: [1.0] * len(c), ngram=1.0, embedding=1.0, history=2, embedder=embedder)
    reward(["p"] * 3, [A, B, "third one here"])
    assert list(reward.history) == [B, "third one here"]
    clone = NoveltyReward(lambda p, c: [1.0] * len(c), ngram=1.0, embedding=1.0, history=2, embedder=embedder)
    clone.load_state_dict(json.loads(json.dumps(reward.state_dict())))
    assert clone(["p"], [A]) == pytest.approx(reward(["p"], [A]))


def test_novelty_needs_a_weight() -> None:
    with pytest.raises(Exception, match="positive weight"):
        NoveltyReward(lambda p, c: [1.0] * len(c))


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_training_logs_novelty_and_resumes_with_the_same_history(algo, tiny_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / algo

    def fresh() -> NoveltyReward:
        return NoveltyReward(cat_reward, ngram=0.5, success_threshold=0.1)

    def config(steps: int):
        return tiny_config(algo=algo, steps=steps, checkpoint_every=2, group={"size": 2},
                           ppo={"batch_size": 4, "minibatch_size": 2}, eval={"max_prompts": 2, "embedding_diversity": False})

    split = PromptSplit(train=PROMPTS, heldout=HELDOUT)
    first = fresh()
    run_redteam(config(2), out, first, tiny_model_dir, eval_reward_fn=cat_reward, prompts=split, progress=False)
    assert first.history, "the cat reward reaches 0.1 within two steps of sampling"
    stats = read_jsonl(out / "stats.jsonl")
    assert all(0.0 <= r["novelty_ngram"] <= 1.0 for r in stats)
    # a resumed run starts from the checkpoint's history, not an empty one
    resumed = fresh()
    result = run_redteam(config(3), out, resumed, tiny_model_dir, eval_reward_fn=cat_reward, prompts=split, progress=False)
    assert result.training.resumed_from == 2
    assert list(resumed.history)[: len(first.history)] == list(first.history)
