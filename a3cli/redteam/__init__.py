"""Red-team generator trained with reinforcement learning: a3's PPO (value head, GAE, adaptive KL, clipping), or TRL's
RLOO or GRPO, on the same reward, prompts and evaluation.

The policy (a causal LM with a LoRA adapter) learns to write text that a reward callable scores high, while a KL
penalty to its starting point (the same model with the adapter off) keeps it fluent. An optional novelty term
(curiosity-driven red-teaming) rewards attacks unlike the earlier successful ones.
"""

from ._evaluate import EvalComparison, PolicyEval, Sample, compare_policies, distinct_n, evaluate_policy
from ._novelty import BleuReferences, Diversity, NoveltyReward, diversity, mean_pairwise_cosine, minilm_embedder, self_bleu
from ._plot import plot_reward_kl, svg_panels
from ._policy import LoraSettings, Policy, Rollout, load_causal_lm, lora_config, resolve_model_path
from ._ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    kl_per_token,
    logprobs_from_logits,
    masked_mean,
    penalised_rewards,
    whiten,
)
from ._prompts import DEFAULT_PROMPTS_PATH, PromptSettings, PromptSplit, load_prompts, make_prompts, read_texts
from ._rewards import DiversityBonus, RewardFn, ToxicityReward, WeightedReward, call_reward, with_diversity
from ._run import EvalSettings, RedteamResult, RedteamRunConfig, run_redteam
from ._trainer import PPOConfig, PPOTrainer, TrainOutcome
from ._trl import GroupSettings, train_trl

__all__ = [
    "DEFAULT_PROMPTS_PATH",
    "AdaptiveKLController",
    "BleuReferences",
    "Diversity",
    "DiversityBonus",
    "EvalComparison",
    "EvalSettings",
    "FixedKLController",
    "GroupSettings",
    "LoraSettings",
    "NoveltyReward",
    "PPOConfig",
    "PPOTrainer",
    "Policy",
    "PolicyEval",
    "PromptSettings",
    "PromptSplit",
    "RedteamResult",
    "RedteamRunConfig",
    "RewardFn",
    "Rollout",
    "Sample",
    "ToxicityReward",
    "TrainOutcome",
    "WeightedReward",
    "call_reward",
    "clipped_policy_loss",
    "clipped_value_loss",
    "compare_policies",
    "distinct_n",
    "diversity",
    "entropy_from_logits",
    "evaluate_policy",
    "gae",
    "kl_per_token",
    "load_causal_lm",
    "load_prompts",
    "logprobs_from_logits",
    "lora_config",
    "make_prompts",
    "masked_mean",
    "mean_pairwise_cosine",
    "minilm_embedder",
    "penalised_rewards",
    "plot_reward_kl",
    "read_texts",
    "resolve_model_path",
    "run_redteam",
    "self_bleu",
    "svg_panels",
    "train_trl",
    "whiten",
    "with_diversity",
]
