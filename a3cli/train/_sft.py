"""LoRA supervised fine-tuning: our own loop (one CPU, one GPU, or several via `accelerate launch` / `torchrun`).

Why not HF Trainer/TRL: the loop below does only what a3 needs and skips what costs time on small runs: logits are
computed only at reply positions (a boolean `logits_to_keep`), micro-batches are length-grouped, frozen weights are
cast to bf16 once (not per matmul) when training in bf16, and there is no per-step metric work (on CPU, TRL projects
every position onto the vocabulary and computes entropy and top-1 accuracy on each step)."""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from a3cli.errors import UsageError
from a3cli.train._dist import Dist
from a3cli.train._examples import IGNORE, SFTExample, TokenizedExample, tokenize_examples
from a3cli.train._frozen_prefix import FrozenPrefix, decoder_of
from a3cli.train._hyper import TrainHyperparams, TrainResult
from a3cli.train._load import load_model_and_tokenizer, strip_gguf_quantizer
from a3cli.train._sampling import (
    draw_epoch,
    epoch_size,
    group_by_length,
    sampling_probabilities,
    steps_of_epoch,
    steps_per_epoch,
)

RESULT_FILE = "train_result.json"


def _torch():
    import torch

    return torch


def lora_config(hp: TrainHyperparams, layers: list[int] | None = None) -> Any:
    """The peft LoraConfig of `hp` (on every layer, or only on `layers`); the TRL baseline in bench/ uses it too."""
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_rank,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=list(hp.target_modules),
        layers_to_transform=layers,
        bias="none",
        task_type="CAUSAL_LM",
    )


def lora_layer_ids(model: Any, hp: TrainHyperparams) -> list[int] | None:
    """The decoder layers LoRA goes on: the last `hp.lora_layers` ones, or None for all of them."""
    n = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
    if hp.lora_layers is None or n == 0 or hp.lora_layers >= n:
        return None
    return list(range(n - hp.lora_layers, n))


def attach_lora(model: Any, hp: TrainHyperparams) -> Any:
    """Wrap `model` in a fresh LoRA adapter (in place, as peft does); seeded so LoRA init is reproducible."""
    torch = _torch()
    from peft import get_peft_model, prepare_model_for_kbit_training

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in hp.target_modules if t not in present]
    if missing:
        raise UsageError(f"LoRA target modules {missing} are not in this model (it has e.g. {sorted(present)[:12]})")
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=hp.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    torch.manual_seed(hp.seed)
    config = lora_config(hp, lora_layer_ids(model, hp))
    with warnings.catch_warnings():
        # peft 0.21 reads the deprecated `is_gradient_checkpointing`; the warning is theirs, not the user's to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def cpu_has_fast_bf16() -> bool:
    """AMX tiles (Sapphire Rapids and later): bf16 matmuls run several times faster than fp32 there."""
    torch = _torch()
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helper; absent in some torch builds
        return False


def _use_bf16(precision: str) -> bool:
    """bf16 autocast (fp32 LoRA weights and optimizer state): on CUDA with bf16 support, and on CPUs with AMX."""
    torch = _torch()
    if precision == "fp32":
        return False
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return True
        if precision == "bf16":
            raise UsageError("precision=bf16 needs a GPU with bf16 support (Ampere or later)")
        return False
    return precision == "bf16" or cpu_has_fast_bf16()


def _frozen_weights_to_bf16(model: Any) -> Any:
    """Cast the frozen fp32 weights to bf16 for the run and return a function that puts the originals back.

    Under autocast every matmul would otherwise re-cast its frozen fp32 weight on every call (autocast caches only
    trainable leaves): on CPU that copying was ~12% of a step. The originals are kept, so the caller's model comes back
    bit-identical. LoRA weights (trainable) stay fp32."""
    torch = _torch()
    originals = []
    for p in model.parameters():
        if not p.requires_grad and p.dtype == torch.float32:
            originals.append((p, p.data))
            p.data = p.data.to(torch.bfloat16)

    def restore() -> None:
        for p, data in originals:
            p.data = data

    return restore


def resolve_precision(precision: str) -> str:
    """What `precision` ("auto", "fp32", "bf16") means on this machine: "bf16" (autocast) or "fp32"."""
    return "bf16" if _use_bf16(precision) else "fp32"


def _checkpointing_on(model: Any) -> bool:
    # transformers 5 renamed is_gradient_checkpointing (deprecated, warns) to is_activation_checkpointing
    name = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(model, name, False))


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def unlikelihood(log_p: Any) -> Any:
    """-log(1 - p) of each avoided start, from log p. Evaluated at p <= 0.99 with the gradient passed straight through,
    so a start the model is sure of (p -> 1, where the loss has no finite value) still gets a bounded push down instead
    of none (a plain clamp would stop its gradient exactly where it is needed most)."""
    capped = log_p - (log_p - log_p.clamp(max=math.log(0.99))).detach()
    return -_torch().log(-_torch().expm1(capped))


class _ReplyLoss:
    """Builds the nn.Module that returns the summed reply-token NLL and the summed unlikelihood of avoided reply
    starts; a module so DDP sees the forward."""

    @staticmethod
    def make(peft_model: Any) -> Any:
        torch = _torch()
        import torch.nn.functional as F

        base_forward = peft_model.get_base_model().forward
        takes_keep = "logits_to_keep" in inspect.signature(base_forward).parameters

        class ReplyLoss(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = peft_model
                self.sliced_head = takes_keep  # cleared if the model ignores a boolean logits_to_keep

            def _token_nll(self, input_ids, target, supervised, kwargs):
                # The model reads token ids, or (frozen bottom layers cached) the hidden states they would produce.
                source = {} if "inputs_embeds" in kwargs else {"input_ids": input_ids}
                if self.sliced_head:
                    # Project onto the vocabulary only where the next token is a reply token: the LM head is a large
                    # share of a small model's compute, and prompt positions need no logits.
                    keep = F.pad(supervised, (0, 1), value=False)
                    logits = self.model(**source, logits_to_keep=keep, **kwargs).logits
                    if logits.dim() == 2 and logits.shape[0] == int(supervised.sum()):
                        return F.cross_entropy(logits.float(), target[supervised], reduction="none")
                    self.sliced_head = False
                logits = self.model(**source, **kwargs).logits
                return F.cross_entropy(logits[:, :-1][supervised].float(), target[supervised], reduction="none")

            def forward(self, input_ids, labels, attention_mask=None, position_ids=None, avoid_ids=None, inputs_embeds=None):
                target = labels[:, 1:]
                supervised = target != IGNORE
                kwargs: dict[str, Any] = {"use_cache": False}
                if inputs_embeds is not None:
                    kwargs["inputs_embeds"] = inputs_embeds
                if attention_mask is not None:
                    kwargs["attention_mask"] = attention_mask
                if position_ids is not None:
                    kwargs["position_ids"] = position_ids
                nll = self._token_nll(input_ids, target, supervised, kwargs)
                if avoid_ids is None:
                    return nll.sum(), nll.new_zeros(())
                # avoid_ids numbers each avoided reply's tokens (-1 elsewhere): their log-probs are summed per reply
                # into log p(start), and the loss is -log(1 - p(start)), large exactly when the model would say it.
                owner = avoid_ids[:, 1:][supervised]
                avoided = owner >= 0
                log_p = nll.new_zeros(int(avoid_ids.max()) + 1).index_add(0, owner[avoided], -nll[avoided])
                return nll[~avoided].sum(), unlikelihood(log_p).sum()

        return ReplyLoss()


def _collate(batch: Sequence[TokenizedExample], pad_id: int, packing: bool, device: Any) -> dict[str, Any]:
    torch = _torch()
    out: dict[str, Any]
    if packing:
        ids = [t for ex in batch for t in ex.input_ids]
        labels = [t for ex in batch for t in ex.labels]
        pos = [p for ex in batch for p in range(len(ex))]
        out = {
            "input_ids": torch.tensor([ids], device=device),
            "labels": torch.tensor([labels], device=device),
            "position_ids": torch.tensor([pos], device=device),
        }
    else:
        # Right padding and no attention mask: under causal attention a real token only sees earlier positions, all
        # real, so the mask changes nothing that reaches the loss (pad positions get no labels and no logits), and
        # without it attention takes the plain causal path (~5-8% faster per step on CPU than a materialised mask).
        width = max(len(ex) for ex in batch)
        ids_t = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels_t = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        for row, ex in enumerate(batch):
            ids_t[row, : len(ex)] = torch.tensor(ex.input_ids)
            labels_t[row, : len(ex)] = torch.tensor(ex.labels)
        out = {"input_ids": ids_t.to(device), "labels": labels_t.to(device)}
    if any(ex.avoid for ex in batch):
        # each avoided reply's positions carry its index in the batch, all other positions -1
        owners = [[n if ex.avoid else -1] * len(ex) for n, ex in enumerate(batch)]
        if packing:
            avoid = torch.tensor([[o for row in owners for o in row]])
        else:
            avoid = torch.full(out["labels"].shape, -1, dtype=torch.long)
            for row, own in enumerate(owners):
                avoid[row, : len(own)] = torch.tensor(own)
        out["avoid_ids"] = avoid.to(device)
    return out


def _schedule(optimizer: Any, kind: str, total: int, warmup: int) -> Any:
    torch = _torch()

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} already exists and is not empty; a3 never overwrites a saved adapter")


def _publish_dir(tmp: Path, out_dir: Path) -> None:
    """Rename a finished temp folder into place; refuses to replace a non-empty folder (rename fails then)."""
    try:
        os.rename(tmp, out_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UsageError(f"{out_dir} appeared while training and is not empty; the new result was not saved") from None


class _Progress:
    """Training steps with loss and tokens/s: a bar on a terminal, plain periodic lines in a CI log."""

    def __init__(self, enabled: bool, total: int) -> None:
        from a3cli._progress import Progress, progress_enabled

        self.bar = Progress("train", total).__enter__() if enabled and progress_enabled() else None

    def update(self, loss: float, tps: float) -> None:
        if self.bar is not None:
            self.bar.advance(1, loss=f"{loss:.4f}", **{"tokens/s": f"{tps:,.0f}"})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _resolve_model(model: Any, tokenizer: Any, hp: TrainHyperparams, bf16: bool, dist: Dist) -> tuple[Any, Any]:
    torch = _torch()
    if isinstance(model, (str, os.PathLike)):
        model, loaded_tok = load_model_and_tokenizer(
            model,
            dtype=torch.bfloat16 if bf16 else torch.float32,
            device=str(dist.device) if hp.load_in_4bit else None,
            load_in_4bit=hp.load_in_4bit,
        )
        tokenizer = tokenizer or loaded_tok
    elif hp.load_in_4bit and not getattr(model, "is_loaded_in_4bit", False):
        raise UsageError("load_in_4bit applies when the trainer loads the model; pass a path, or a model loaded in 4-bit")
    if tokenizer is None:
        raise UsageError("a tokenizer is needed with a loaded model")
    strip_gguf_quantizer(model.get_base_model() if _is_peft(model) else model)
    return model, tokenizer


def _save(peft_model: Any, result: TrainResult, out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        peft_model.save_pretrained(tmp)
        (tmp / RESULT_FILE).write_text(result.model_dump_json(indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_dir(tmp, out_dir)


def _frozen_prefix(
    peft_model: Any, hp: TrainHyperparams, tokenized: Sequence[TokenizedExample], pad_id: int, device: Any, dist: Dist,
    quantized: bool, autocast: Any, notes: list[str],
) -> FrozenPrefix | None:
    """With LoRA on the top layers only, the bottom layers' outputs computed once (see _frozen_prefix), else None."""
    base = peft_model.get_base_model()
    layers = lora_layer_ids(base, hp)
    if layers is None:
        return None
    decoder = decoder_of(base)
    why = (
        "the model is not a Llama-style decoder" if decoder is None else "packing is on" if hp.packing
        else "training is distributed" if dist.world > 1 else "the base is quantized" if quantized else None
    )
    if why is not None:
        notes.append(f"LoRA on layers {layers[0]}-{layers[-1]}; their inputs are recomputed every step ({why})")
        return None
    start = time.perf_counter()
    frozen = FrozenPrefix.compute(decoder, layers[0], tokenized, pad_id, device, batch_size=2 * hp.batch_size, autocast=autocast)
    notes.append(
        f"LoRA on layers {layers[0]}-{layers[-1]}; layers 0-{layers[0] - 1} run once per example "
        f"({frozen.nbytes / 2**20:.0f} MiB of cached states, {time.perf_counter() - start:.1f} s)"
    )
    return frozen


def train_lora(
    model: Any,
    tokenizer: Any,
    examples: Sequence[SFTExample],
    hyperparams: TrainHyperparams,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
) -> TrainResult:
    """LoRA-fine-tune `model` on the reply tokens of `examples` and save the adapter into `out_dir` (must not exist or
    be empty; written to a temp folder and renamed, so it is never half-written or overwritten).

    `model` is a loaded causal LM, a PeftModel (its active adapter is trained and left attached), or a path (folder
    or .gguf; `tokenizer` may then be None). A plain model is wrapped, trained, and handed back as it came (LoRA
    layers removed, weights bit-identical), so one loaded base serves many trainings; it is left on the training
    device. Under `accelerate launch` / `torchrun`, every process calls this with the same arguments; each trains
    its share of every step and rank 0 saves."""
    torch = _torch()
    from peft.helpers import disable_input_dtype_casting

    hp = hyperparams
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    if not examples:
        raise UsageError("no training examples")
    bf16 = _use_bf16(hp.precision)
    dist = Dist()
    model, tokenizer = _resolve_model(model, tokenizer, hp, bf16, dist)

    notes: list[str] = []
    tokenized = tokenize_examples(list(examples), tokenizer, hp.max_length, hp.avoid_tokens)
    truncated = sum(1 for t in tokenized if t.prompt_tokens_dropped)
    if truncated:
        notes.append(f"{truncated} example(s) had their prompt cut from the left to max_length={hp.max_length}")
    sources = [ex.source for ex in examples]
    weights = [ex.weight for ex in examples]
    hypotheses = [ex.hypothesis_id if ex.source != "general" else None for ex in examples]
    if hp.general_share > 0 and "general" not in sources:
        notes.append("general_share > 0 but there are no general examples; trained on task examples only")
    lengths = [len(t) for t in tokenized]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise UsageError("the tokenizer has neither a pad nor an eos token")

    world = dist.world
    try:
        sampling_probabilities(sources, weights, hp.general_share)
    except ValueError as e:
        raise UsageError(f"cannot sample training examples: {e}") from None
    n_draws = epoch_size(sources, hp.general_share)
    total_steps = hp.max_steps or hp.epochs * steps_per_epoch(n_draws, hp.batch_size, hp.grad_accum, world)
    warmup = math.ceil(hp.warmup_ratio * total_steps)

    owns_adapter = not _is_peft(model)
    was_training = model.training
    peft_model = attach_lora(model, hp) if owns_adapter else model
    base = peft_model.get_base_model()
    checkpointing_was = _checkpointing_on(base)
    quantized = getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False)
    restore_weights: Any = lambda: None
    try:
        if bf16 and not quantized:
            restore_weights = _frozen_weights_to_bf16(peft_model)
        if hp.gradient_checkpointing and not checkpointing_was:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        params = [p for p in peft_model.parameters() if p.requires_grad]
        if not params:
            raise UsageError("the model has no trainable (LoRA) parameters")
        device = dist.device
        loss_module = dist.wrap(_ReplyLoss.make(peft_model), move=not quantized)
        optimizer = torch.optim.AdamW(
            params, lr=hp.learning_rate, weight_decay=hp.weight_decay, **({"fused": True} if device.type == "cuda" else {})
        )
        scheduler = _schedule(optimizer, hp.lr_scheduler, total_steps, warmup)
        torch.manual_seed(hp.seed + dist.rank)  # dropout masks
        peft_model.train()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        # Under autocast peft's cast of each LoRA input to the fp32 adapter dtype is undone by autocast right after;
        # skipping it changes no value and saves two activation copies per LoRA layer (~8% of a CPU step).
        no_input_cast = disable_input_dtype_casting(peft_model, active=bf16 and not quantized)

        losses: list[float] = []
        avoid_losses: list[float] = []
        lrs: list[float] = []
        tokens_seen = supervised_seen = 0
        draws: Counter[str] = Counter()
        draws_by_hypothesis: Counter[str] = Counter()
        bar = _Progress(progress and dist.is_main, total_steps)
        step = epoch = 0
        t0 = time.perf_counter()
        frozen = _frozen_prefix(peft_model, hp, tokenized, pad_id, device, dist, quantized, autocast, notes)
        with no_input_cast:
            try:
                while step < total_steps:
                    drawn = draw_epoch(sources, weights, hp.general_share, hp.seed, epoch)
                    micro = group_by_length(drawn, lengths, hp.batch_size, hp.seed, epoch)
                    for step_batches in steps_of_epoch(micro, hp.grad_accum, world):
                        if step >= total_steps:
                            break
                        # Every process knows the whole step's plan, so each micro-batch is normalised by the step's
                        # reply-token count (and avoided-reply count) without communicating (DDP then averages the
                        # gradients over processes).
                        n_sup = sum(tokenized[i].n_supervised for mb in step_batches for i in mb if not tokenized[i].avoid)
                        n_avoid = sum(1 for mb in step_batches for i in mb if tokenized[i].avoid)
                        mine = step_batches[dist.rank :: world]
                        loss_sum = torch.zeros((), device=device)
                        avoid_sum = torch.zeros((), device=device)
                        for k, mb in enumerate(mine):
                            batch = _collate([tokenized[i] for i in mb], pad_id, hp.packing, device)
                            if frozen is not None:
                                batch["inputs_embeds"] = frozen.batch(mb, batch["input_ids"].shape[1])
                            with dist.no_sync(loss_module, sync=k == len(mine) - 1), (frozen.top_only() if frozen else nullcontext()):
                                with autocast:
                                    nll, unlikelihood = loss_module(**batch)
                                loss = nll * (world / max(1, n_sup)) + unlikelihood * (hp.unlikelihood_weight * world / max(1, n_avoid))
                                loss.backward()
                            loss_sum += nll.detach().float()
                            avoid_sum += unlikelihood.detach().float()
                        if hp.max_grad_norm is not None:
                            torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
                        optimizer.step()
                        lrs.append(scheduler.get_last_lr()[0])
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        losses.append(float(dist.sum(loss_sum)) / max(1, n_sup))
                        if n_avoid:
                            avoid_losses.append(float(dist.sum(avoid_sum)) / n_avoid)
                        tokens_seen += sum(len(tokenized[i]) for mb in step_batches for i in mb)
                        supervised_seen += n_sup
                        draws.update(sources[i] for mb in step_batches for i in mb)
                        draws_by_hypothesis.update(h for mb in step_batches for i in mb if (h := hypotheses[i]) is not None)
                        step += 1
                        bar.update(losses[-1], tokens_seen / (time.perf_counter() - t0))
                    epoch += 1
            finally:
                bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if any(not math.isfinite(x) for x in losses):
            notes.append("non-finite loss seen during training")
        result = TrainResult(
            adapter_path=str(out_dir),
            steps=step,
            epochs_drawn=epoch,
            losses=losses,
            avoid_losses=avoid_losses,
            learning_rates=lrs,
            tokens_seen=tokens_seen,
            supervised_tokens=supervised_seen,
            tokens_per_second=tokens_seen / wall if wall > 0 else 0.0,
            steps_per_second=step / wall if wall > 0 else 0.0,
            wall_time_s=wall,
            draws_per_source=dict(draws),
            draws_per_hypothesis=dict(sorted(draws_by_hypothesis.items())),
            world_size=world,
            precision="bf16" if bf16 else "fp32",
            frozen_layers_cached=0 if frozen is None else frozen.split,
            notes=notes,
            hyperparams=hp,
        )
        if dist.is_main:
            _save(peft_model, result, out_dir)
        dist.barrier()
        return result
    finally:
        if hp.gradient_checkpointing and not checkpointing_was:
            base.gradient_checkpointing_disable()
        peft_model.train(was_training)
        restore_weights()
        if owns_adapter:
            peft_model.unload()


def read_train_result(adapter_dir: str | os.PathLike[str]) -> TrainResult:
    return TrainResult.model_validate(json.loads((Path(adapter_dir) / RESULT_FILE).read_text(encoding="utf-8")))


def merge_adapter(
    base_path: str | os.PathLike[str],
    adapter_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    dtype: Any = None,
) -> Path:
    """Merge a saved LoRA adapter into its base and save a standalone model + tokenizer to `out_path` (temp folder,
    then rename; never overwrites). dtype defaults to fp32 (merging in bf16 loses precision on CPU)."""
    torch = _torch()
    from peft import PeftModel

    out = Path(out_path)
    _check_out_dir(out)
    model, tokenizer = load_model_and_tokenizer(base_path, dtype=dtype or torch.float32, device="cpu")
    merged = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
    strip_gguf_quantizer(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_dir(tmp, out)
    return out
