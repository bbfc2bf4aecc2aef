"""`algo="rloo"` and `algo="grpo"`: the same red-team set-up trained with TRL's maintained RL trainers.

- RLOO (Ahmadian et al. 2024, `trl.RLOOTrainer`): k completions per prompt, each one's baseline the mean reward of the
  other k-1; the KL to the reference is subtracted from the reward (`beta`).
- GRPO (Shao et al. 2024, `trl.GRPOTrainer`): a group of completions per prompt, advantages normalised within the
  group; the KL to the reference is a term of the loss (`beta`, k3 estimator).

TRL 1.16 takes a plain callable `reward(prompts, completions, **kwargs) -> list[float | None]` (None: unscorable, its
advantage is 0), holds the reference as the base with the adapter off when given a `peft_config` (with `beta = 0` it
computes no reference at all) and checkpoints/resumes through the transformers Trainer. We map our PPOConfig onto
their configs, their log onto the rows of `stats.jsonl`, and save the reward's state (the novelty history) beside
each of their checkpoints, so a resumed run continues with the same history.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from a3cli._io import write_jsonl
from a3cli.errors import UsageError

from ._policy import LoraSettings, Policy, format_prompts, lora_config
from ._rewards import RewardFn, call_reward
from ._trainer import STATS_FILE, PPOConfig, TrainOutcome

TrlAlgo = Literal["rloo", "grpo"]
REWARD_STATE_FILE = "a3_reward_state.json"


class GroupSettings(BaseModel):
    """What RLOO and GRPO share: a group of completions per prompt, compared with each other."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(4, ge=2)  # completions per prompt (RLOO's k, GRPO's num_generations)
    num_iterations: int = Field(1, ge=1)  # optimisation passes per generated batch


# TRL log key -> our stats key (the rest are kept under their TRL names)
_RENAME = {"reward": "score_mean", "reward_std": "score_std", "kl": "kl_mean_per_token", "entropy": "entropy", "loss": "policy_loss"}


def stats_from_log(log_history: list[dict[str, Any]], *, kl_measured: bool) -> list[dict[str, Any]]:
    """One row per training step from TRL's log. Without a reference (beta 0) TRL measures no KL: the row says None
    rather than a 0 nobody measured."""
    rows = []
    for entry in log_history:
        if "reward" not in entry:  # the final summary row (train_runtime, ...) has no reward
            continue
        row: dict[str, Any] = {"step": int(entry["step"])}
        for key, value in entry.items():
            if key == "step":
                continue
            name = _RENAME.get(key, key)
            row[key if name != key and name in entry else name] = value  # GRPO logs its own policy_loss beside loss
        if not kl_measured:
            row["kl_mean_per_token"] = None
        rows.append(row)
    return rows


def _trl_config(algo: TrlAlgo, **common: Any) -> Any:
    from trl import GRPOConfig, RLOOConfig

    if algo == "rloo":
        return RLOOConfig(**common)
    # GRPO's own defaults otherwise: loss "dapo", rewards scaled within the group.
    return GRPOConfig(**common)


def _trainer_class(algo: TrlAlgo) -> Any:
    from trl import GRPOTrainer, RLOOTrainer

    return RLOOTrainer if algo == "rloo" else GRPOTrainer


def train_trl(
    algo: TrlAlgo,
    model,
    tokenizer,
    *,
    lora: LoraSettings,
    ppo: PPOConfig,
    group: GroupSettings,
    reward_fn: RewardFn,
    train_prompts: Sequence[str],
    out_dir: str | Path,
    steps: int,
    chat_template: bool = False,
    checkpoint_every: int = 10,
    keep_checkpoints: int = 2,
    time_limit_s: float | None = None,
    progress: bool = True,
) -> tuple[Policy, TrainOutcome]:
    """Train `model` (a plain causal LM; TRL adds the LoRA adapter) with RLOO or GRPO. One step = one batch of
    `ppo.batch_size` completions (`batch_size / group.size` prompts x `group.size` samples). `ppo.init_kl_coef` is
    TRL's fixed `beta` (their trainers have no adaptive KL), `ppo.cliprange` their `epsilon`. Resumes from the last
    TRL checkpoint in `out_dir/checkpoints`."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    if algo not in ("rloo", "grpo"):
        raise UsageError(f"unknown TRL algorithm {algo!r}; use rloo or grpo")
    if ppo.batch_size % group.size:
        raise UsageError(f"{algo}: batch_size ({ppo.batch_size}) must be a multiple of the group size ({group.size})")
    out_dir = Path(out_dir)
    trl_dir = out_dir / "checkpoints"
    trl_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device

    # A chat template is applied here, so TRL sees plain text and the reward sees the user's prompt text.
    formatted = format_prompts(tokenizer, train_prompts, chat_template)
    original = dict(zip(formatted, train_prompts, strict=True))

    def reward(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float | None]:
        values = call_reward(reward_fn, [original.get(p, p) for p in prompts], list(completions))
        log_metric = kwargs.get("log_metric")
        for key, value in (getattr(reward_fn, "last_stats", None) or {}).items():
            if log_metric is not None and math.isfinite(value):
                log_metric(key, value)  # e.g. the novelty terms, next to TRL's own reward and KL
        return values

    reward.__name__ = getattr(reward_fn, "__name__", "reward")

    args = _trl_config(
        algo,
        output_dir=str(trl_dir),
        learning_rate=ppo.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=ppo.weight_decay,
        max_grad_norm=ppo.max_grad_norm,
        per_device_train_batch_size=ppo.batch_size,
        gradient_accumulation_steps=1,
        num_generations=group.size,
        num_iterations=group.num_iterations,
        max_completion_length=ppo.max_new_tokens,
        temperature=ppo.temperature,
        top_k=ppo.top_k,
        beta=ppo.init_kl_coef,
        epsilon=ppo.cliprange,
        max_steps=steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=max(1, checkpoint_every),
        save_total_limit=keep_checkpoints or None,
        seed=ppo.seed,
        report_to="none",
        bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        fp16=False,
        activation_checkpointing=False,  # recomputing activations costs CPU time and LoRA on a small model needs no memory saving
        disable_dropout=True,
        use_cpu=device.type == "cpu",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        log_completions=False,
    )

    class _A3Callback(TrainerCallback):
        """Stops at the time limit (with a checkpoint) and saves the reward's state into each checkpoint."""

        def __init__(self) -> None:
            self.start = time.monotonic()
            self.hit = False

        def on_step_end(self, args, state, control, **kwargs):
            if time_limit_s is not None and time.monotonic() - self.start >= time_limit_s and state.global_step < steps:
                self.hit = control.should_training_stop = control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            folder = trl_dir / f"checkpoint-{state.global_step}"
            if hasattr(reward_fn, "state_dict") and folder.is_dir():
                (folder / REWARD_STATE_FILE).write_text(json.dumps(reward_fn.state_dict()), encoding="utf-8")
            return control

    callback = _A3Callback()
    trainer = _trainer_class(algo)(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": formatted}),
        processing_class=tokenizer,
        peft_config=lora_config(lora, model),
        callbacks=[callback],
    )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # without a progress bar the Trainer would print every log row
    last = get_last_checkpoint(str(trl_dir))
    resumed = int(Path(last).name.split("-")[-1]) if last else None
    if last and hasattr(reward_fn, "load_state_dict") and (Path(last) / REWARD_STATE_FILE).is_file():
        reward_fn.load_state_dict(json.loads((Path(last) / REWARD_STATE_FILE).read_text(encoding="utf-8")))
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=last)
    wall = time.monotonic() - start
    rows = stats_from_log(trainer.state.log_history, kl_measured=ppo.init_kl_coef != 0)
    write_jsonl(out_dir / STATS_FILE, rows)
    done = trainer.state.global_step - (resumed or 0)
    policy = Policy(trainer.model, tokenizer, chat_template=chat_template)
    policy.lora = lora
    outcome = TrainOutcome(
        steps_done=trainer.state.global_step,
        resumed_from=resumed,
        stopped_by_time_limit=callback.hit,
        wall_s=round(wall, 3),
        seconds_per_step=round(wall / done, 3) if done else None,
    )
    return policy, outcome
