"""PPO for the red-team policy (Ziegler et al. 2019 set-up, as in TRL's classic PPOTrainer).

One step: sample a batch of responses -> score them with the reward callable -> per-token rewards with a KL
penalty to the reference (adapter off) -> GAE -> several epochs of clipped policy/value updates on shuffled
minibatches -> adapt the KL coefficient. Stats go to `stats.jsonl`; checkpoints to `checkpoints/step-NNNNNN/`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from a3cli._io import read_jsonl, write_json, write_jsonl
from a3cli.errors import InfrastructureError, UsageError

from ._policy import Policy, Rollout, _replace_dir
from ._ppo_math import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    logprobs_from_logits,
    masked_mean,
    penalised_rewards,
    whiten,
)
from ._rewards import RewardFn, call_reward

STATS_FILE = "stats.jsonl"
CHECKPOINT_DIR = "checkpoints"


class PPOConfig(BaseModel):
    """PPO hyper-parameters. Defaults follow Ziegler et al. / TRL's PPO, adjusted for LoRA and small batches."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)  # rollouts per step
    minibatch_size: int = Field(4, ge=1)
    ppo_epochs: int = Field(4, ge=1)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    ent_coef: float = Field(0.0, ge=0)
    init_kl_coef: float = Field(0.1, ge=0)
    adaptive_kl: bool = True
    kl_target: float = Field(6.0, gt=0)  # nats per sequence
    # In samples: beta moves by at most 0.2 * batch_size / horizon per step. Ziegler/TRL use 10000 with batches of
    # hundreds; with batches of 8 that would freeze beta, so the default is smaller.
    kl_horizon: int = Field(1000, gt=0)
    kl_estimator: Literal["k1", "abs", "k2", "k3"] = "k1"
    score_scale: float = Field(1.0, gt=0)  # multiplies the reward before it meets the KL penalty
    score_clip: float | None = Field(None, gt=0)
    whiten_advantages: bool = True
    max_new_tokens: int = Field(24, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)  # 0: no top-k filter
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _minibatches_divide_batch(self) -> PPOConfig:
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"minibatch_size ({self.minibatch_size}) must divide batch_size ({self.batch_size})")
        return self


class TrainOutcome(BaseModel):
    steps_done: int
    resumed_from: int | None
    stopped_by_time_limit: bool
    wall_s: float
    seconds_per_step: float | None


def _slice(ro: Rollout, rows: torch.Tensor) -> tuple[Rollout, int]:
    """Rows of a rollout with all-padding prompt columns (left) and response columns (right) trimmed.

    Returns the sub-rollout and its response length R' (per-token tensors must be cut to [:, :R'])."""
    pm, rm = ro.prompt_mask[rows], ro.response_mask[rows]
    first = int((pm.sum(0) > 0).nonzero()[0]) if pm.sum() > 0 else 0
    r = int(rm.sum(1).max().clamp(min=1))
    return Rollout(ro.prompt_ids[rows, first:], pm[:, first:], ro.response_ids[rows, :r], rm[:, :r], []), r


class PPOTrainer:
    """Trains `policy` on `reward_fn` with PPO. `train()` resumes from the last checkpoint in `out_dir`."""

    def __init__(
        self,
        policy: Policy,
        config: PPOConfig,
        reward_fn: RewardFn,
        train_prompts: Sequence[str],
        out_dir: str | Path,
        *,
        checkpoint_every: int = 10,
        keep_checkpoints: int = 2,
        progress: bool = True,
    ):
        if not train_prompts:
            raise UsageError("no training prompts")
        self.policy, self.config, self.reward_fn = policy, config, reward_fn
        self.prompts = list(train_prompts)
        self.out_dir = Path(out_dir)
        self.checkpoint_every, self.keep_checkpoints, self.progress = checkpoint_every, keep_checkpoints, progress
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.params = policy.trainable_parameters()
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.kl_ctl: AdaptiveKLController | FixedKLController = (
            AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
            if config.adaptive_kl
            else FixedKLController(config.init_kl_coef)
        )
        self.step = 0
        self.stats: list[dict[str, Any]] = []

    @property
    def stats_path(self) -> Path:
        return self.out_dir / STATS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / CHECKPOINT_DIR

    # --- data ---------------------------------------------------------------------------------

    def prompts_for_step(self, step: int) -> list[str]:
        """Batch `step` of an endless stream of epochs, each a permutation seeded by (seed, epoch): no state to save."""
        n, b = len(self.prompts), self.config.batch_size
        out = []
        for i in range(step * b, (step + 1) * b):
            epoch, pos = divmod(i, n)
            order = list(range(n))
            random.Random(self.config.seed * 1_000_003 + epoch).shuffle(order)
            out.append(self.prompts[order[pos]])
        return out

    # --- one PPO step -------------------------------------------------------------------------

    def ppo_step(self) -> dict[str, Any]:
        cfg, policy = self.config, self.policy
        t0, cpu0 = time.monotonic(), time.process_time()
        prompts = self.prompts_for_step(self.step)
        policy.eval()
        ro = policy.generate(prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k)
        t_gen = time.monotonic() - t0
        raw = call_reward(self.reward_fn, prompts, ro.completions)
        scored = torch.tensor([s is not None for s in raw], device=policy.device)
        if not scored.any():
            raise InfrastructureError("the reward function left every sample of the batch unscored")
        scores = torch.tensor([s if s is not None else 0.0 for s in raw], device=policy.device) * cfg.score_scale
        if cfg.score_clip is not None:
            scores = scores.clamp(-cfg.score_clip, cfg.score_clip)
        # unscored samples stay out of every loss and statistic
        mask = ro.response_mask.float() * scored[:, None].float()

        with torch.no_grad():
            logits, values = policy(ro, temperature=cfg.temperature)
            logp_old = logprobs_from_logits(logits, ro.response_ids)
            entropy = masked_mean(entropy_from_logits(logits), mask).item()
            del logits
            with policy.reference():
                ref_logits, _ = policy(ro, temperature=cfg.temperature, with_values=False)
            logp_ref = logprobs_from_logits(ref_logits, ro.response_ids)
            del ref_logits
            values = values * mask
            beta = self.kl_ctl.value
            rewards, kl = penalised_rewards(scores, logp_old, logp_ref, mask, beta, cfg.kl_estimator)
            advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                advantages = whiten(advantages, mask)
        t_score = time.monotonic() - t0 - t_gen

        # per-step generator: the minibatch order depends on (seed, step) only, so resuming needs no extra state
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        sums: dict[str, float] = {}
        n_updates = 0
        policy.train(False)  # dropout stays off: log-probs of the update must match the rollout's
        for _ in range(cfg.ppo_epochs):
            for rows in torch.randperm(cfg.batch_size, generator=gen).split(cfg.minibatch_size):
                rows = rows.to(policy.device)
                m = mask[rows]
                if m.sum() == 0:
                    continue
                sub, r = _slice(ro, rows)
                m = m[:, :r]
                new_logits, v_new = policy(sub, temperature=cfg.temperature)
                logp_new = logprobs_from_logits(new_logits, sub.response_ids)
                pg_loss, pg_stats = clipped_policy_loss(logp_new, logp_old[rows, :r], advantages[rows, :r], m, cfg.cliprange)
                vf_loss, vf_stats = clipped_value_loss(v_new, values[rows, :r], returns[rows, :r], m, cfg.cliprange_value)
                loss = pg_loss + cfg.vf_coef * vf_loss
                if cfg.ent_coef > 0:
                    loss = loss - cfg.ent_coef * masked_mean(entropy_from_logits(new_logits), m)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    raise InfrastructureError(f"non-finite gradient at step {self.step + 1}; lower the learning rate")
                self.optimizer.step()
                n_updates += 1
                for key, value in {
                    "policy_loss": pg_loss.item(),
                    "value_loss": vf_loss.item(),
                    "grad_norm": grad_norm.item(),
                    **{k: v.item() for k, v in pg_stats.items()},
                    **{k: v.item() for k, v in vf_stats.items()},
                }.items():
                    sums[key] = sums.get(key, 0.0) + value

        kl_seq = (kl * mask).sum(-1)[scored]  # k-estimator KL per sequence, nats
        mean_kl = kl_seq.mean().item()
        self.kl_ctl.update(mean_kl, n_steps=cfg.batch_size)
        self.step += 1

        good = [s for s in raw if s is not None]
        best = max(range(len(raw)), key=lambda i: raw[i] if raw[i] is not None else float("-inf"))
        row: dict[str, Any] = {
            "step": self.step,
            "score_mean": sum(good) / len(good),
            "score_std": float(torch.tensor(good).std(unbiased=False)),
            "score_max": max(good),
            "n_unscored": len(raw) - len(good),
            "kl_mean": mean_kl,
            "kl_mean_per_token": ((kl * mask).sum() / mask.sum().clamp(min=1)).item(),  # comparable with RLOO/GRPO's
            "kl_coef": beta,
            "entropy": entropy,
            "response_len_mean": ro.response_mask.sum(-1).float().mean().item(),
            "value_mean": masked_mean(values, mask).item(),
            "return_mean": masked_mean(returns, mask).item(),
            **{k: v / max(n_updates, 1) for k, v in sums.items()},
            "n_updates": n_updates,
            "time_generate_s": round(t_gen, 3),
            "time_score_s": round(t_score, 3),
            "time_s": round(time.monotonic() - t0, 3),
            "cpu_s": round(time.process_time() - cpu0, 3),  # all threads; time_s >> cpu_s / threads means a busy machine
            "best_prompt": prompts[best],
            "best_completion": ro.completions[best],
            **{k: v for k, v in (getattr(self.reward_fn, "last_stats", None) or {}).items()},  # e.g. the novelty terms
        }
        return row

    # --- loop, checkpoints --------------------------------------------------------------------

    def train(self, total_steps: int, *, time_limit_s: float | None = None) -> TrainOutcome:
        """Run until `total_steps` PPO steps are done (counting those of a resumed run) or the time limit passes."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        resumed = self.resume()
        start, first_step = time.monotonic(), self.step
        stopped = False
        last_saved = self.step if resumed is not None else None
        columns = [
            TextColumn("[bold]redteam PPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task("ppo", total=total_steps, completed=self.step, info="")
            while self.step < total_steps:
                row = self.ppo_step()
                self.stats.append(row)
                write_jsonl(self.stats_path, self.stats)
                bar.update(task, completed=self.step, info=f"score {row['score_mean']:.3f}  kl {row['kl_mean']:.2f}")
                if self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    self.save_checkpoint()
                    last_saved = self.step
                if time_limit_s is not None and time.monotonic() - start >= time_limit_s:
                    stopped = self.step < total_steps
                    break
        if self.step > 0 and last_saved != self.step:
            self.save_checkpoint()
        done = self.step - first_step
        wall = time.monotonic() - start
        return TrainOutcome(
            steps_done=self.step,
            resumed_from=resumed,
            stopped_by_time_limit=stopped,
            wall_s=round(wall, 3),
            seconds_per_step=round(wall / done, 3) if done else None,
        )

    def save_checkpoint(self) -> Path:
        """adapter + value head, optimiser, KL controller, RNG, reward state and step, in one atomic folder."""
        final = self.checkpoint_dir / f"step-{self.step:06d}"
        tmp = self.checkpoint_dir / f".step-{self.step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.policy.save(tmp / "policy")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        reward_state = self.reward_fn.state_dict() if hasattr(self.reward_fn, "state_dict") else None
        write_json(
            tmp / "state.json",
            {
                "step": self.step,
                "kl_controller": self.kl_ctl.state_dict(),
                "reward_state": reward_state,
                "config": self.config.model_dump(mode="json"),
            },
        )
        _replace_dir(tmp, final)
        for old in self.checkpoints()[: -self.keep_checkpoints] if self.keep_checkpoints > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a folder only gets its final name once everything is written)."""
        if not self.checkpoint_dir.exists():
            return []
        return sorted(p for p in self.checkpoint_dir.glob("step-*") if (p / "state.json").exists())

    def resume(self) -> int | None:
        """Load the last checkpoint, if any, and drop stats rows written after it. Returns its step."""
        found = self.checkpoints()
        if not found:
            if self.stats_path.exists():
                self.stats_path.unlink()  # stats of a run that never reached a checkpoint
            return None
        last = found[-1]
        state = json.loads((last / "state.json").read_text(encoding="utf-8"))
        if state["config"] != self.config.model_dump(mode="json"):
            changed = sorted(k for k, v in self.config.model_dump(mode="json").items() if state["config"].get(k) != v)
            raise UsageError(f"{self.out_dir} holds a run with other PPO settings ({', '.join(changed)}); use a new output folder")
        self.policy.load(last / "policy")
        self.optimizer.load_state_dict(torch.load(last / "optimizer.pt", map_location=self.policy.device, weights_only=True))
        rng = torch.load(last / "rng.pt", weights_only=False)  # python's RNG state is a plain tuple; our own file
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        if state.get("reward_state") is not None and hasattr(self.reward_fn, "load_state_dict"):
            self.reward_fn.load_state_dict(state["reward_state"])
        self.step = int(state["step"])
        self.stats = [r for r in read_jsonl(self.stats_path) if r["step"] <= self.step] if self.stats_path.exists() else []
        return self.step
