"""Base policy vs trained policy on the same held-out prompts, with the same sampling seed: mean reward, KL from the
base, and how diverse the completions are (distinct-1/2, 1 - SelfBLEU, 1 - mean cosine similarity), over all of them
and over the successful ones (reward at or above a threshold)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import BaseModel

from ._novelty import Diversity, Embedder, diversity
from ._policy import Policy
from ._ppo_math import kl_per_token, logprobs_from_logits
from ._rewards import RewardFn, call_reward, words


class Sample(BaseModel):
    prompt: str
    completion: str
    reward: float | None  # None: the reward function left it unscored


class PolicyEval(BaseModel):
    policy: Literal["base", "trained"]
    n_prompts: int
    n_unscored: int
    mean_reward: float | None
    std_reward: float | None
    distinct_1: float  # unique word unigrams / all unigrams over the completions
    distinct_2: float
    diversity: Diversity | None = None  # all completions: distinct-1/2, 1 - SelfBLEU, 1 - mean cosine similarity
    success_threshold: float | None = None
    n_successful: int | None = None  # completions whose reward reached success_threshold
    successful_diversity: Diversity | None = None  # the same measures over the successful completions only
    mean_kl_from_base: float  # nats per completion, sum_t logp_policy - logp_base on the policy's own samples
    mean_response_tokens: float
    samples: list[Sample]  # the first n_samples, for reading


class EvalComparison(BaseModel):
    seed: int
    max_new_tokens: int
    temperature: float
    base: PolicyEval
    trained: PolicyEval
    reward_gain: float | None  # trained.mean_reward - base.mean_reward


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): distinct word n-grams / total word n-grams across all texts (0 when none)."""
    total, unique = 0, set()
    for text in texts:
        w = words(text)
        grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


@torch.no_grad()
def evaluate_policy(
    policy: Policy,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    *,
    which: Literal["base", "trained"],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    batch_size: int = 8,
    seed: int = 0,
    n_samples: int = 10,
    success_threshold: float | None = None,
    embedder: Embedder | None = None,
) -> tuple[PolicyEval, list[Sample]]:
    """Sample one completion per prompt from the base (adapter off) or trained policy and score it.

    The global RNG is forked and re-seeded, so both policies see the same random stream and training is unaffected.
    """
    use = policy.reference if which == "base" else contextlib.nullcontext
    rows: list[Sample] = []
    kls: list[float] = []
    lengths: list[float] = []
    devices = [policy.device] if policy.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            with use():
                ro = policy.generate(batch, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k)
                logits, _ = policy(ro, temperature=temperature, with_values=False)
            logp = logprobs_from_logits(logits, ro.response_ids)
            del logits
            with policy.reference():
                ref_logits, _ = policy(ro, temperature=temperature, with_values=False)
            logp_ref = logprobs_from_logits(ref_logits, ro.response_ids)
            del ref_logits
            mask = ro.response_mask.float()
            kls += (kl_per_token(logp, logp_ref, "k1") * mask).sum(-1).tolist()
            lengths += mask.sum(-1).tolist()
            rewards = call_reward(reward_fn, batch, ro.completions)
            rows += [Sample(prompt=p, completion=c, reward=r) for p, c, r in zip(batch, ro.completions, rewards, strict=True)]
    scored = [r.reward for r in rows if r.reward is not None]
    mean = sum(scored) / len(scored) if scored else None
    std = math.sqrt(sum((x - mean) ** 2 for x in scored) / len(scored)) if scored else None
    completions = [r.completion for r in rows]
    successful = None if success_threshold is None else [r.completion for r in rows if r.reward is not None and r.reward >= success_threshold]
    result = PolicyEval(
        policy=which,
        n_prompts=len(rows),
        n_unscored=len(rows) - len(scored),
        mean_reward=mean,
        std_reward=std,
        distinct_1=distinct_n(completions, 1),
        distinct_2=distinct_n(completions, 2),
        diversity=diversity(completions, embedder),
        success_threshold=success_threshold,
        n_successful=None if successful is None else len(successful),
        successful_diversity=None if successful is None else diversity(successful, embedder),
        mean_kl_from_base=sum(kls) / len(kls) if kls else 0.0,
        mean_response_tokens=sum(lengths) / len(lengths) if lengths else 0.0,
        samples=rows[:n_samples],
    )
    return result, rows


def compare_policies(
    policy: Policy,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    batch_size: int = 8,
    seed: int = 0,
    n_samples: int = 10,
    success_threshold: float | None = None,
    embedder: Embedder | None = None,
) -> tuple[EvalComparison, dict[str, list[Sample]]]:
    """Evaluate base and trained policy on the same prompts and seed. Returns the comparison and every sample."""
    if not prompts:
        raise ValueError("no held-out prompts to evaluate on")
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_k": top_k,
        "batch_size": batch_size,
        "seed": seed,
        "n_samples": n_samples,
        "success_threshold": success_threshold,
        "embedder": embedder,
    }
    base, base_rows = evaluate_policy(policy, prompts, reward_fn, which="base", **kwargs)
    trained, trained_rows = evaluate_policy(policy, prompts, reward_fn, which="trained", **kwargs)
    gain = trained.mean_reward - base.mean_reward if base.mean_reward is not None and trained.mean_reward is not None else None
    comparison = EvalComparison(
        seed=seed, max_new_tokens=max_new_tokens, temperature=temperature, base=base, trained=trained, reward_gain=gain
    )
    return comparison, {"base": base_rows, "trained": trained_rows}
