"""Full fine-tuning: every weight trained by the LoRA trainer's own loop (same loss, sampling, unlikelihood and
precision rules; `_sft.train_with`), saved atomically as a whole model folder (weights, config, tokenizer and the
training record), which loads and fingerprints like any local model.

What differs from LoRA is memory: the weights, their gradients and AdamW's two moments all live on the training device
(about 16 bytes per parameter in fp32, before activations). That is estimated and said before the first step, and
said loudly when it exceeds the device's free memory. A model handed in by the caller is given back as it came (its
weights restored from a host copy), so one loaded base serves several trainings, as with LoRA."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3cli.errors import UsageError
from a3cli.train._examples import SFTExample
from a3cli.train._hyper import MemoryEstimate, TrainHyperparams, TrainResult
from a3cli.train._sft import _is_peft, train_with

_log = logging.getLogger(__name__)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def free_memory(device: Any) -> int | None:
    """Bytes free on `device` now: the GPU's free memory, or the host's available memory (MemAvailable)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_estimate(model: Any, device: Any, *, base_copy: bool) -> MemoryEstimate:
    """Weights + gradients + AdamW states of a full fine-tune of `model` (shared parameters counted once). Gradients
    and torch's AdamW moments take each parameter's own dtype."""
    seen: set[int] = set()
    numel = weight_bytes = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        numel += p.numel()
        weight_bytes += p.numel() * p.element_size()
    return MemoryEstimate(
        parameters=numel,
        weights=weight_bytes,
        gradients=weight_bytes,
        optimizer_states=2 * weight_bytes,
        total=4 * weight_bytes,
        base_copy=weight_bytes if base_copy else 0,
        device=str(device),
        available=free_memory(device),
    )


def describe_estimate(m: MemoryEstimate) -> str:
    text = (
        f"full fine-tuning of {m.parameters:,} parameters holds weights {_gib(m.weights)} + gradients {_gib(m.gradients)} "
        f"+ AdamW states {_gib(m.optimizer_states)} = {_gib(m.total)} on {m.device}, plus activations"
    )
    if m.base_copy:
        text += f" (and a {_gib(m.base_copy)} host copy of the base, to hand it back unchanged)"
    if m.available is not None:
        text += f"; {_gib(m.available)} free"
    return text


def exceeds(m: MemoryEstimate) -> bool:
    return m.available is not None and m.total + (m.base_copy if m.device == "cpu" else 0) > m.available


class FullMethod:
    """Every weight trainable; the saved folder is a complete model."""

    name = "full"

    def prepare(self, model: Any, hp: TrainHyperparams, *, give_back: bool) -> tuple[Any, Any]:
        import torch

        if _is_peft(model):
            raise UsageError("full fine-tuning trains a plain model, not one with a LoRA adapter attached; merge or unload it first")
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False) or hp.load_in_4bit:
            raise UsageError("full fine-tuning cannot update quantized (4/8-bit) weights; load the model in bf16 or fp32, or train LoRA")
        flags = [(p, p.requires_grad) for p in model.parameters()]
        # Kept on the host so the caller's model comes back as it came (one loaded base, several trainings).
        snapshot = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()} if give_back else None
        for p, _ in flags:
            p.requires_grad_(True)

        def release() -> None:
            if snapshot is not None:
                with torch.no_grad():
                    for n, p in model.named_parameters():
                        p.copy_(snapshot[n])
            for p, flag in flags:
                p.requires_grad_(flag)

        return model, release

    def before_training(self, trained: Any, device: Any, give_back: bool) -> tuple[list[str], MemoryEstimate]:
        estimate = memory_estimate(trained, device, base_copy=give_back)
        text = describe_estimate(estimate)
        if exceeds(estimate):
            text += (
                ": more than is free, so training will probably run out of memory. Use training.method: lora, a smaller "
                "model, or a device with more memory"
            )
        _log.warning("%s", text)  # said before the first step, on the console and in the result
        return [text], estimate

    def save(self, trained: Any, tokenizer: Any, folder: Path) -> None:
        trained.save_pretrained(folder)
        tokenizer.save_pretrained(folder)


def train_full(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    hyperparams: TrainHyperparams,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune every weight of `model` on the reply tokens of `examples` and save the whole model (with its
    tokenizer and `train_result.json`) into `out_dir` (must not exist or be empty; written to a temp folder and
    renamed). `model` is a loaded causal LM (given back unchanged) or a path (folder or .gguf)."""
    hp = hyperparams if hyperparams.method == "full" else hyperparams.model_copy(update={"method": "full"})
    return train_with(FullMethod(), model, tokenizer, examples, hp, out_dir, progress=progress)


def train_checkpoint(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    hyperparams: TrainHyperparams,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> TrainResult:
    """LoRA or full fine-tuning, as `hyperparams.method` says."""
    from a3cli.train._sft import train_lora

    train = train_full if hyperparams.method == "full" else train_lora
    return train(model, tokenizer, examples, hyperparams, out_dir, progress=progress)
