"""Fixed-mix baseline (A3's scripts/run_sft_with_fixed_mixing.py): the same trainer as `a3 train`, without the agent,
over a sweep of harmful:benign shares.

For each share h in `defenses.mix.harmful_shares`, harmful examples get h of the task draws and benign ones 1 - h
(each example keeps its relative weight from `expect`, e.g. the seed counts double), and general-capability data
(the target's own answers to `training.general_data`, as in `a3 train`) gets `defenses.mix.general_share` of all
draws. Hyper-parameters are fixed, not searched, and default to A3's: LoRA rank 64, alpha 256, learning rate 1e-5,
5 epochs, 15 % general data, shares 10/30/50/70/90 %; `defenses.mix.method: full` (or `training.method`) fine-tunes
every weight instead (A3's --no-lora). Each checkpoint is measured with `evaluate_checkpoint` (validation, OOD,
capability); the undefended target's capability is measured once too.

Re-runs reuse an adapter and its evaluation when the examples, hyper-parameters and spec are unchanged (plan.json).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from a3cli._io import read_json, write_json
from a3cli.defend._inputs import DefendInputs
from a3cli.defend._score import CostMeter
from a3cli.defend._types import AddedTokens, DefenceCost, DefenceRow, MethodResult
from a3cli.errors import A3Error
from a3cli.evaluate import EvalResult, evaluate_checkpoint
from a3cli.rundir import stage_spec_hash
from a3cli.spec import Spec
from a3cli.train import SFTExample, TrainHyperparams, TrainResult
from a3cli.train._examples import row_prefill

PLAN = "plan.json"


def mix_method(spec: Spec) -> str:
    return spec.defenses.mix.method or spec.training.method


def fixed_hyperparams(spec: Spec) -> TrainHyperparams:
    cfg = spec.defenses.mix
    modules = {"target_modules": spec.training.target_modules} if spec.training.target_modules else {}
    return TrainHyperparams(
        method=mix_method(spec),  # type: ignore[arg-type]
        lora_rank=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        learning_rate=cfg.learning_rate,
        epochs=cfg.epochs,
        max_steps=spec.training.max_steps,
        batch_size=spec.training.batch_size,
        max_length=spec.training.max_length,
        seed=spec.training.seed,
        general_share=spec.defenses.mix.general_share,
        load_in_4bit=spec.training.load_in_4bit,
        lora_layers=spec.training.lora_layers,  # like target_modules: how LoRA is applied follows `training`
        **modules,
    )


def _role(message: Any) -> str:
    return message["role"] if isinstance(message, dict) else message.role


def mix_examples(sft_rows: list[dict[str, Any]], general_rows: list[dict[str, Any]], harmful_share: float) -> list[SFTExample]:
    """Harmful rows share `harmful_share` of the task mass, benign rows the rest; relative weights are kept. Rows with
    no reply to learn (benign topic swaps, which only name a refusal to avoid) are not part of a fixed mix."""
    with_reply = [r for r in sft_rows if _role(r["messages"][-1]) == "assistant"]
    harmful = [r for r in with_reply if r["kind"] == "harmful"]
    benign = [r for r in with_reply if r["kind"] == "benign"]
    if not harmful or not benign:
        raise A3Error(
            f"the fixed-mix sweep needs harmful and benign training examples (expect/train_sft.jsonl has {len(harmful)} "
            f"harmful, {len(benign)} benign)"
        )
    out: list[SFTExample] = []
    for rows, share, source in ((harmful, harmful_share, "harmful"), (benign, 1.0 - harmful_share, "benign")):
        mass = sum(float(r.get("weight", 1.0)) for r in rows)
        for r in rows:
            out.append(
                SFTExample(
                    messages=[m if isinstance(m, dict) else m.model_dump() for m in r["messages"]],
                    weight=float(r.get("weight", 1.0)) * share / mass,
                    source=source,  # type: ignore[arg-type]
                    hypothesis_id=r.get("hypothesis_id"),
                    prefill=row_prefill(r),  # a forced reply start stays in the prompt
                )
            )
    out += [SFTExample(messages=r["messages"], weight=1.0, source="general") for r in general_rows]
    return out


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def train_plan(examples: list[SFTExample], hp: TrainHyperparams, spec: Spec) -> str:
    """What an adapter depends on: its examples, hyper-parameters and base model."""
    return _hash({"examples": [e.model_dump(mode="json") for e in examples], "hp": hp.model_dump(mode="json"), "target": spec.target.model_dump(mode="json")})


def eval_plan(train: str, spec: Spec, capability: bool) -> str:
    """What an adapter's evaluation depends on besides the adapter: the spec sections defend reads, capability on/off."""
    return _hash({"train": train, "spec": stage_spec_hash(spec, "defend"), "capability": capability})


def _plan(folder: Path) -> dict[str, Any]:
    try:
        data = read_json(folder / PLAN)
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached_eval(folder: Path, plan: str) -> EvalResult | None:
    result_path = folder / "eval" / "result.json"
    if _plan(folder).get("eval") != plan or not result_path.is_file():
        return None
    try:
        return EvalResult.model_validate(read_json(result_path))
    except (ValueError, OSError):
        return None


def run_mix(
    spec: Spec,
    engine: Any,
    inputs: DefendInputs,
    *,
    spec_dir: Path | None = None,
    capability: bool = True,
) -> MethodResult:
    """Train and evaluate one checkpoint (a LoRA adapter, or a whole model with method full) per harmful share; one
    table row each."""
    from a3cli._io import read_jsonl
    from a3cli.assets import resolve_local_model
    from a3cli.llm import unload_local_models
    from a3cli.stages.general_data import build_general_examples, general_source_path, load_general_conversations
    from a3cli.stages.train import checkpoint_dir, checkpoint_ref
    from a3cli.train import load_model_and_tokenizer, read_train_result, train_checkpoint

    cfg = spec.defenses.mix
    trainable = spec.target.trainable()
    if trainable is None:
        return MethodResult(
            method="mix",
            rows=[],
            skipped=f"the fixed-mix sweep fine-tunes the target, which needs provider `local` or target.weights (the target is {spec.target.provider!r})",
        )
    run = inputs.run
    root = run.path("defend", "mix")
    notes: list[str] = []
    sft_rows = read_jsonl(run.path("expect", "train_sft.jsonl"))
    meter = CostMeter(engine)
    general_rows: list[dict[str, Any]] = []
    if cfg.general_share > 0 and spec.training.general_data.limit > 0:
        conversations = load_general_conversations(general_source_path(spec, spec_dir), spec.training.general_data.limit)
        general_rows, failed = build_general_examples(spec, engine, conversations)
        if failed:
            notes.append(f"{failed} general-data prompt(s) got no reply from the target and were dropped")
    hp = fixed_hyperparams(spec)
    full = hp.method == "full"
    notes.append(
        "fixed hyper-parameters: "
        + ("full fine-tuning" if full else f"LoRA rank {hp.lora_rank}, alpha {hp.lora_alpha}")
        + f", lr {hp.learning_rate:.3g}, epochs {hp.epochs}"
        + (f", max_steps {hp.max_steps}" if hp.max_steps else "")
        + f", batch {hp.batch_size}, general share {hp.general_share:.0%} ({len(general_rows)} general examples)"
    )
    general_usage, _ = meter.read()

    base_capability = None
    if capability:
        base_meter = CostMeter(engine)
        base_plan = eval_plan("base", spec, True)
        base = _cached_eval(root / "base", base_plan)
        if base is None:
            # A full checkpoint is measured on this machine, so its base is too (no server loads a whole model).
            base_ref = trainable if full and spec.target.provider != "local" else None
            base = evaluate_checkpoint(
                spec, run, engine, capability=True, target=base_ref, out_dir=root / "base" / "eval", spec_dir=spec_dir, like_checkpoints=True
            )
            write_json(root / "base" / PLAN, {"eval": base_plan})
        base_capability = base.capability
        notes.append(f"baseline capability measured for comparison ({base_meter.read()[1]:.0f} s; reused when unchanged)")

    model = tokenizer = None
    rows: list[DefenceRow] = []
    attempts: list[dict[str, Any]] = []
    for share in cfg.harmful_shares:
        name = f"h{share:.2f}"
        folder = root / name
        adapter = checkpoint_dir(folder, hp.method)
        share_meter = CostMeter(engine)
        examples = mix_examples(sft_rows, general_rows, share)
        t_plan = train_plan(examples, hp, spec)
        e_plan = eval_plan(t_plan, spec, capability)
        previous = _plan(folder)
        train_result: TrainResult | None = None
        if adapter.is_dir() and previous.get("train") == t_plan:
            train_result = read_train_result(adapter)
        else:
            for stale in (folder / "adapter", folder / "checkpoint"):
                if stale.exists():
                    shutil.rmtree(stale)  # a checkpoint of an older plan, in this method's own folder
            if model is None:
                unload_local_models()  # the engine's copy served the probes; free it before loading one to train
                model, tokenizer = load_model_and_tokenizer(resolve_local_model(trainable.model, revision=trainable.revision))
            train_result = train_checkpoint(model, tokenizer, examples, hp, adapter)
            write_json(folder / PLAN, {"train": t_plan, "harmful_share": share, "hyperparams": hp.model_dump(mode="json")})
        result = _cached_eval(folder, e_plan)
        if result is None:
            which = {"target": checkpoint_ref(trainable, adapter)} if full else {"adapter": str(adapter)}
            result = evaluate_checkpoint(spec, run, engine, capability=capability, out_dir=folder / "eval", spec_dir=spec_dir, **which)
            write_json(folder / PLAN, {**_plan(folder), "eval": e_plan})
        usage, wall = share_meter.read()
        draws = train_result.draws_per_source
        row = DefenceRow(
            defence=f"mix:{name}",
            method="mix",
            detail=(
                f"{'full fine-tuning' if full else f'LoRA SFT (rank {hp.lora_rank}, alpha {hp.lora_alpha})'}, harmful:benign = "
                f"{share:.0%}:{1 - share:.0%} of task draws, general share {hp.general_share:.0%}; "
                f"{train_result.steps} steps, draws {dict(sorted(draws.items()))}"
            ),
            validation=result.validation,
            ood=result.ood,
            capability=result.capability,
            suites=result.suites,
            added_prompt_tokens=AddedTokens(per_request=0.0, method="none"),
            cost=DefenceCost(usage=usage, wall_time_s=wall, train_time_s=round(train_result.wall_time_s, 3)),
            notes=list(result.notes) + list(train_result.notes),
        )
        rows.append(row)
        attempts.append(
            {
                "harmful_share": share,
                "adapter" if not full else "checkpoint": run.rel(adapter),
                "eval": run.rel(folder / "eval" / "result.json"),
                "kl_drift": result.kl_drift,
                "final_loss": train_result.losses[-1] if train_result.losses else None,
            }
        )
    if general_rows:
        notes.append(f"general-data replies: {general_usage.total.calls} target call(s), {general_usage.total.cached} cached")
    return MethodResult(method="mix", rows=rows, attempts=attempts, notes=notes, baseline_capability=base_capability)
