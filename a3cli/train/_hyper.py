"""Training hyperparameters and the result of a training run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TrainHyperparams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lora_rank: int = Field(default=16, ge=1, le=1024)
    lora_alpha: int = Field(default=32, ge=1)
    # 0 by default: on CPU the dropout masks cost ~10% of a step, and short LoRA runs gain little from them
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)
    lora_layers: int | None = Field(
        default=None, ge=1,
        description="LoRA on the last N decoder layers only (None: all). The frozen layers below then run once per "
        "example instead of once per step (their outputs are cached), which cuts a step's cost accordingly",
    )
    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0)
    epochs: int = Field(default=2, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=1024, ge=8)
    warmup_ratio: float = Field(default=0.1, ge=0.0, le=0.5)
    seed: int = 0
    general_share: float = Field(default=0.25, ge=0.0, le=0.95, description="share of draws from general examples")
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    gradient_checkpointing: bool = False
    packing: bool = Field(
        default=False,
        description="padding-free rows with restarting position_ids instead of padded batches; pays off with "
        "flash/varlen attention on GPU, costs extra attention work with SDPA on CPU",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 autocast on CUDA and on CPUs with AMX, else fp32"
    )
    load_in_4bit: bool = Field(default=False, description="QLoRA base via bitsandbytes (CUDA only)")
    unlikelihood_weight: float = Field(
        default=1.0, ge=0.0, description="weight of -log(1 - p(avoided reply's first tokens)), averaged over `avoid` examples"
    )
    avoid_tokens: int = Field(default=3, ge=1, le=64, description="how many first tokens of an avoided reply are penalised")

    @field_validator("target_modules")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if any(not s.strip() for s in v):
            raise ValueError("target module names must be non-empty")
        return v


class TrainResult(BaseModel):
    adapter_path: str
    steps: int
    epochs_drawn: int
    losses: list[float] = Field(description="mean reply-token loss of each optimizer step")
    avoid_losses: list[float] = Field(default_factory=list, description="mean unlikelihood term of each step that drew `avoid` examples")
    learning_rates: list[float]
    tokens_seen: int = Field(description="non-padding tokens through the model (prompt + reply)")
    supervised_tokens: int
    tokens_per_second: float
    steps_per_second: float
    wall_time_s: float = Field(description="training loop only, without loading and saving")
    draws_per_source: dict[str, int]
    draws_per_hypothesis: dict[str, int] = Field(
        default_factory=dict, description="task rows drawn per hypothesis id: what the per-hypothesis weights did"
    )
    world_size: int
    precision: Literal["bf16", "fp32"] = "fp32"  # results written before this field existed were fp32
    frozen_layers_cached: int = Field(0, description="bottom layers run once per example (their outputs cached), 0 when none")
    notes: list[str] = Field(default_factory=list)
    hyperparams: TrainHyperparams
