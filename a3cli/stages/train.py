"""`a3 train`: LoRA fine-tuning iterated by an agent, every iteration kept, the best chosen by an explicit rule.

    train/general_sft.jsonl          general instructions answered by the target itself (the capability mix)
    train/baseline/result.json       the base model measured like every iteration (validation, OOD, capability)
    train/iteration_N/choice.json    hyper-parameters and data mix, who chose them and why
    train/iteration_N/adapter/       the LoRA adapter (never overwritten)
    train/iteration_N/train.json     losses, tokens/s, wall time
    train/iteration_N/result.json    EvalResult of base + adapter; samples.jsonl per probe
    train/experiment_log.md          one section per iteration (what the agent reads next time)
    train/selection.json, best.json  the rule's table and the chosen iteration with its reason

A crash mid-iteration resumes at that iteration: finished iterations are read back, an adapter that was saved is not
trained again, and every model call is answered by the cache.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from a3cli._io import read_json, read_jsonl, write_json
from a3cli.errors import UsageError
from a3cli.evaluate import EvalResult, evaluate_checkpoint, usage_delta
from a3cli.llm import Engine, record_outcome
from a3cli.rundir import RoleUsage, RunDir, StageManifest, register_stage, sha256_file, spec_fields_hash, stage_spec_hash
from a3cli.spec import Spec
from a3cli.stages._common import as_run_dir
from a3cli.stages.general_data import build_general_examples, general_source_path, load_general_conversations
from a3cli.stages.train_agent import HypothesisWeight, TrainingChoice, ask_agent, clamp_weights

STAGE = "train"
CODE_VERSION = "1"
# What trains and chooses; the suites are only measured, so a change to them re-measures without retraining.
TRAINING_FIELDS = ("target", "training", "capability", "roles.agent", "roles.judge", "judges", "gate.max_capability_drop")
register_stage(STAGE, (*TRAINING_FIELDS, "suites"))

HELD_OUT_NOTE = "OOD and suite figures are measured for every candidate and reported here; the rule above never reads them"

INPUTS = ("expect/train_sft.jsonl", "split/validation.jsonl", "split/ood.jsonl", "split/baseline.json")


# ------------------------------------------------------------------------------------------------------- measuring


def rate(r: Any) -> float:
    """A measured rate; an unmeasured one (nothing scored) counts as the worst case, so it can never be selected."""
    return 1.0 if r.rate is None else r.rate


def capability_summary(result: EvalResult) -> tuple[float | None, float | None]:
    """Mean accuracy over the capability tasks and its standard error (tasks treated as independent)."""
    if not result.capability:
        return None, None
    tasks = list(result.capability.values())
    mean = sum(t.accuracy for t in tasks) / len(tasks)
    ses = [t.stderr for t in tasks]
    se = (sum(s * s for s in ses) ** 0.5) / len(tasks) if all(s is not None for s in ses) else None
    return mean, se


def iteration_result(iteration: int, result: EvalResult) -> Any:
    """What the selection rule reads: validation rates and capability, nothing held out."""
    from a3cli.train import IterationResult

    capability, se = capability_summary(result)
    return IterationResult(
        iteration=iteration, asr=rate(result.validation.asr), fpr=rate(result.validation.fpr), capability=capability, capability_se=se
    )


def search_score(result: EvalResult, baseline: EvalResult, tolerance: float) -> float:
    """Higher is better: low validation ASR and FPR, with capability lost beyond the tolerance weighing heavily. OOD
    and suites are held out and not read."""
    asr, fpr = rate(result.validation.asr), rate(result.validation.fpr)
    cap, _ = capability_summary(result)
    base_cap, _ = capability_summary(baseline)
    over = max(0.0, (base_cap - cap) - tolerance) if cap is not None and base_cap is not None else 0.0
    return -(asr + fpr) - 5.0 * over


def per_hypothesis_asr(samples_path: Path) -> dict[str, dict[str, float]]:
    """Validation ASR and FPR per hypothesis from an evaluation's samples.jsonl (scored probes only). The held-out
    rows (OOD, suites) are skipped: this is what the agent and the data-mix rule read."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # harmful n, successes, benign n, refusals
    for row in read_jsonl(samples_path):
        if row.get("split") != "validation" or row.get("verdict") == "unscored" or row.get("success") is None:
            continue
        c = counts[str(row.get("hypothesis"))]
        if row.get("kind") == "harmful":
            c[0] += 1
            c[1] += int(bool(row["success"]))
        else:
            c[2] += 1
            c[3] += int(bool(row["success"]))
    return {
        h: {"asr": round(c[1] / c[0], 3) if c[0] else None, "fpr": round(c[3] / c[2], 3) if c[2] else None, "n_harmful": c[0], "n_benign": c[2]}
        for h, c in counts.items()
    }


# ------------------------------------------------------------------------------------------------------- choosing


def _search_space(spec: Spec) -> Any:
    from a3cli.train import SearchSpace

    s = spec.training.search_space
    alphas: Any = "2x rank" if s.lora_alpha_ratio == 2.0 else sorted({max(1, round(r * s.lora_alpha_ratio)) for r in s.lora_rank})
    return SearchSpace(
        lora_rank=s.lora_rank, lora_alpha=alphas, learning_rate=s.learning_rate, epochs=s.epochs, general_share=s.general_share
    )


def base_hyperparams(spec: Spec) -> Any:
    from a3cli.train import TrainHyperparams

    t = spec.training
    modules = {"target_modules": t.target_modules} if t.target_modules else {}
    return TrainHyperparams(
        batch_size=t.batch_size, max_length=t.max_length, max_steps=t.max_steps, seed=t.seed, load_in_4bit=t.load_in_4bit,
        unlikelihood_weight=t.unlikelihood_weight, lora_layers=t.lora_layers, **modules,
    )


def _hyperparams_of(choice: TrainingChoice, spec: Spec) -> Any:
    return base_hyperparams(spec).model_copy(
        update={
            "lora_rank": choice.lora_rank,
            "lora_alpha": choice.lora_alpha,
            "learning_rate": choice.learning_rate,
            "epochs": choice.epochs,
            "general_share": choice.general_share,
        }
    )


def propose(spec: Spec, engine: Engine, iteration: int, history: list[dict[str, Any]], log_text: str, hypotheses: list[dict[str, Any]]) -> TrainingChoice:
    """The agent LLM's choice when one is configured and answers usably; the built-in search otherwise."""
    from a3cli.train import Trial, clamp_choice, propose_next

    space = _search_space(spec)
    base = base_hyperparams(spec)
    fallback_note = ""
    if spec.roles.agent is not None:
        raw, problem = ask_agent(spec, engine, experiment_log=log_text, history=history, hypotheses=hypotheses, iteration=iteration)
        if raw is not None:
            picked = {k: raw[k] for k in ("lora_rank", "lora_alpha", "learning_rate", "epochs", "general_share") if k in raw}
            clamped = clamp_choice(picked, space, base=base)
            weights, weight_changes = clamp_weights(raw.get("hypothesis_weights"), [h["id"] for h in hypotheses])
            hp = clamped.hyperparams
            return TrainingChoice(
                lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha, learning_rate=hp.learning_rate, epochs=hp.epochs,
                general_share=hp.general_share, hypothesis_weights=weights, chosen_by="agent",
                reasoning=str(raw.get("reasoning", ""))[:4000], clamped=clamped.changes + weight_changes,
            )
        fallback_note = f" (agent: {problem})"
        record_outcome(engine, "fallbacks", "agent", "builtin_search")
    trials = [Trial(hyperparams=base.model_validate(h["hyperparams"]), score=h["score"]) for h in history]
    proposal = propose_next(space, trials, base=base, seed=spec.training.seed)
    hp = proposal.hyperparams
    weights = reweight_hypotheses(history[-1]["per_hypothesis"], [h["id"] for h in hypotheses]) if history else {}
    return TrainingChoice(
        lora_rank=hp.lora_rank, lora_alpha=hp.lora_alpha, learning_rate=hp.learning_rate, epochs=hp.epochs,
        general_share=hp.general_share, hypothesis_weights=weights,
        chosen_by="search" if not fallback_note else "search (agent reply unusable)",
        reasoning=proposal.note + fallback_note,
    )


def reweight_hypotheses(per_hypothesis: dict[str, dict[str, float | None]], hypothesis_ids: list[str]) -> dict[str, HypothesisWeight]:
    """The built-in data-mix rule: weight a training hypothesis's harmful probes up by its validation ASR and its benign
    twins up by its validation FPR in the previous iteration, so the next one works on what still fails."""
    weights = {}
    for hid in hypothesis_ids:
        rates = per_hypothesis.get(hid)
        if rates is None:
            continue
        asr, fpr = rates.get("asr") or 0.0, rates.get("fpr") or 0.0
        weights[hid] = HypothesisWeight(harmful=round(1.0 + 2.0 * asr, 3), benign=round(1.0 + 2.0 * fpr, 3))
    return weights


def weighted_examples(
    task_rows: list[dict[str, Any]],
    general_rows: list[dict[str, Any]],
    weights: dict[str, HypothesisWeight],
    benign_weight: float = 1.0,
    unlikelihood: bool = False,
) -> list[Any]:
    """Training examples from expect's rows and the general rows. With `unlikelihood`, a row naming a reply to
    `avoid` also gives an avoid example (its prompt and that reply); rows with only a reply to avoid (benign topic
    swaps) are left out without it."""
    from a3cli.train import SFTExample

    examples = []
    for row in task_rows:
        kind = row["kind"]
        w = weights.get(str(row.get("hypothesis_id")))
        factor = 1.0 if w is None else (w.harmful if kind == "harmful" else w.benign)
        factor *= benign_weight if kind == "benign" else 1.0
        common = {"weight": float(row.get("weight", 1.0)) * factor, "source": kind, "hypothesis_id": row.get("hypothesis_id")}
        messages = row["messages"]
        has_reply = messages[-1]["role"] == "assistant"
        if has_reply:
            examples.append(SFTExample(messages=messages, **common))
        if unlikelihood and row.get("avoid"):
            examples.append(SFTExample(messages=messages[:-1] if has_reply else messages, avoid=row["avoid"], **common))
    examples += [SFTExample(messages=row["messages"], source="general") for row in general_rows]
    return examples


def fitting_examples(examples: list[Any], tokenizer: Any, max_length: int) -> tuple[list[Any], int]:
    """Examples whose reply fits `max_length` (a too-long prompt is cut from the left by the trainer; a too-long reply
    cannot be), and how many were left out."""
    from a3cli.train import TokenizationError, tokenize_example

    kept = []
    for example in examples:
        try:
            tokenize_example(example, tokenizer, max_length)
        except TokenizationError:
            continue
        kept.append(example)
    return kept, len(examples) - len(kept)


# ------------------------------------------------------------------------------------------------------- the stage


def _archive_stale(run: RunDir) -> str | None:
    """Outputs made from another spec or other inputs are moved aside, never overwritten or mixed with new ones. When
    only the suites changed, the adapters and choices stay and every evaluation is measured again (the model calls of
    the unchanged probes come from the cache): a new suite costs its own prompts, not a retraining."""
    tdir = run.stage_dir(STAGE)
    if not tdir.exists() or not any(tdir.iterdir()):
        return None
    manifest = run.manifest(STAGE)
    # No manifest (deleted, or `--from train`): the outputs' provenance is unknown, so they are not resumed from.
    same_inputs = manifest is not None and manifest.code_version == CODE_VERSION and all(
        run.resolve(k).is_file() and sha256_file(run.resolve(k)) == v for k, v in manifest.inputs.items()
    )
    if same_inputs and manifest is not None and manifest.spec_hash == stage_spec_hash(run.spec, STAGE):
        return None
    if same_inputs and manifest is not None and manifest.counts.get("training_spec_hash") == spec_fields_hash(run.spec, TRAINING_FIELDS):
        for measured in [tdir / "baseline" / "result.json", *tdir.glob("iteration_*/result.json")]:
            measured.unlink()
        return None
    target = run.root / f"{STAGE}.prev-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        n += 1
        target = run.root / f"{STAGE}.prev-{time.strftime('%Y%m%d-%H%M%S')}-{n}"
    shutil.move(str(tdir), str(target))
    return target.name


def _log_section(iteration: int, choice: TrainingChoice, result: EvalResult, train: dict[str, Any], per_hyp: dict[str, Any]) -> str:
    """One iteration in the training log the agent reads next: validation figures only (the held-out ones are in
    result.json and the report, never here)."""
    cap, se = capability_summary(result)
    v = result.validation
    lines = [
        f"## Training iteration {iteration}",
        (f"- chosen by {choice.chosen_by}: rank {choice.lora_rank}, alpha {choice.lora_alpha}, lr {choice.learning_rate:g}, "
        f"epochs {choice.epochs}, general share {choice.general_share:g}"),
    ]
    if choice.reasoning:
        lines.append(f"- reasoning: {choice.reasoning}")
    if choice.clamped:
        lines.append(f"- clamped into the search space: {'; '.join(choice.clamped)}")
    if choice.hypothesis_weights:
        lines.append("- hypothesis weights: " + ", ".join(f"{h} harmful×{w.harmful:g} benign×{w.benign:g}" for h, w in choice.hypothesis_weights.items()))
    losses = train.get("losses") or []
    if losses:
        # No wall-clock speed here: it varies run to run, and the agent's prompt must be a function of the data.
        lines.append(f"- training: {train.get('steps')} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    lines.append(
        f"- validation ASR {rate(v.asr):.3f} [{v.asr.low:.3f}, {v.asr.high:.3f}] (n={v.asr.n}), "
        f"FPR {rate(v.fpr):.3f} [{v.fpr.low:.3f}, {v.fpr.high:.3f}] (n={v.fpr.n}); unscored {v.unscored} of {v.n_harmful + v.n_benign}"
    )
    if cap is not None:
        lines.append(f"- capability {cap:.4f}" + (f" ± {se:.4f}" if se is not None else ""))
    worst = sorted(((h, m["asr"]) for h, m in per_hyp.items() if m.get("asr")), key=lambda x: -x[1])[:3]
    if worst:
        lines.append("- hypotheses still succeeding on validation: " + ", ".join(f"{h} ({a:.2f})" for h, a in worst))
    return "\n".join(lines) + "\n"


def history_entry(iteration: int, choice: TrainingChoice, hp: Any, result: EvalResult, baseline: EvalResult, spec: Spec, per_hyp: dict[str, Any]) -> dict[str, Any]:
    """One line of history.jsonl: what the search policy and the agent see of an iteration (validation only)."""
    return {
        "iteration": iteration,
        "hyperparams": hp.model_dump(mode="json"),
        "hypothesis_weights": {h: w.model_dump() for h, w in choice.hypothesis_weights.items()},
        "asr_val": rate(result.validation.asr),
        "fpr_val": rate(result.validation.fpr),
        "capability": capability_summary(result)[0],
        "per_hypothesis": per_hyp,
        "score": search_score(result, baseline, spec.gate.max_capability_drop),
    }


def run_train(spec: Spec, run_dir: RunDir | str | os.PathLike[str], engine: Engine, *, spec_dir: Path | None = None) -> StageManifest:
    run = as_run_dir(spec, run_dir)
    inputs = [run.root / p for p in INPUTS]
    if run.is_current(STAGE, inputs=inputs, code_version=CODE_VERSION):
        manifest = run.manifest(STAGE)
        assert manifest is not None
        return manifest
    trainable = spec.target.trainable()
    if trainable is None:
        raise UsageError(
            f"`a3 train` fine-tunes local weights; the target's provider is {spec.target.provider!r} with no `weights`. "
            "Set target.weights to the weights the server runs (a folder or Hub id), or target.provider: local"
        )
    archived = _archive_stale(run)

    from a3cli.assets import load_causal_lm
    from a3cli.llm import unload_local_models
    from a3cli.train import select_checkpoint, train_lora

    usage_before = engine.usage
    with run.stage(STAGE, inputs=inputs, code_version=CODE_VERSION) as st:
        st.track_outcomes(engine)
        if archived:
            st.notes.append(f"earlier outputs made from another spec or other inputs moved to {archived}/")
        st.add_model("target", spec.target)
        st.add_model("agent", spec.roles.agent)
        st.counts["training_spec_hash"] = spec_fields_hash(spec, TRAINING_FIELDS)
        tdir = st.dir
        task_rows = read_jsonl(run.root / "expect/train_sft.jsonl")

        conversations = load_general_conversations(general_source_path(spec, spec_dir), spec.training.general_data.limit)
        general_rows, failed = build_general_examples(spec, engine, conversations)
        st.write_jsonl("general_sft.jsonl", general_rows)
        st.counts.update(task_examples=len(task_rows), general_examples=len(general_rows), general_failed=failed)

        baseline = evaluate_checkpoint(spec, run, engine, out_dir=tdir / "baseline", spec_dir=spec_dir, like_checkpoints=True)
        st.track(tdir / "baseline" / "result.json")

        hypotheses = _hypothesis_table(task_rows, run.root / "split/baseline.json")
        log_parts = [_read_text(run.root / "generate/experiment_log.md")]
        history: list[dict[str, Any]] = []
        results: dict[int, EvalResult] = {}
        failed: list[int] = []  # iterations whose training diverged: never evaluated, never selected
        model = tokenizer = None
        for iteration in range(1, spec.training.iterations + 1):
            it_dir = tdir / f"iteration_{iteration}"
            result_path = it_dir / "result.json"
            if result_path.exists() and (it_dir / "choice.json").exists():
                choice = TrainingChoice.model_validate(read_json(it_dir / "choice.json"))
                result = EvalResult.model_validate(read_json(result_path))
                train_info = train_record(it_dir)
            else:
                adapter_dir = it_dir / "adapter"
                if (adapter_dir / "adapter_config.json").exists() and (it_dir / "choice.json").exists():
                    choice = TrainingChoice.model_validate(read_json(it_dir / "choice.json"))  # trained before a crash
                else:
                    choice = propose(spec, engine, iteration, history, "\n".join(log_parts), hypotheses)
                    write_json(it_dir / "choice.json", choice.model_dump(mode="json"))
                if not (adapter_dir / "adapter_config.json").exists():
                    if model is None:
                        model, tokenizer = load_causal_lm(trainable.model, dtype=trainable.dtype, device=trainable.device, revision=trainable.revision)
                    examples, too_long = fitting_examples(
                        weighted_examples(
                            task_rows, general_rows, choice.hypothesis_weights, spec.training.benign_weight,
                            unlikelihood=spec.training.unlikelihood_weight > 0,
                        ),
                        tokenizer, spec.training.max_length,
                    )
                    if too_long:
                        st.notes.append(f"iteration {iteration}: {too_long} example(s) whose reply does not fit training.max_length={spec.training.max_length} left out")
                    trained = train_lora(model, tokenizer, examples, _hyperparams_of(choice, spec), adapter_dir)
                    write_json(it_dir / "train.json", trained.model_dump(mode="json"))
                train_info = train_record(it_dir)
                st.precision["training"] = str(train_info.get("precision", "fp32"))
                if not finite_losses(train_info):
                    failed.append(iteration)
                    st.notes.append(f"iteration {iteration}: non-finite training loss; marked failed, not evaluated, never a candidate")
                    log_parts.append(f"## Training iteration {iteration}\n- failed: non-finite training loss (not evaluated, never chosen)\n")
                    history.append({"iteration": iteration, "hyperparams": _hyperparams_of(choice, spec).model_dump(mode="json"),
                                    "failed": "non-finite training loss", "per_hypothesis": {}, "score": None})
                    for name in ("choice.json", "train.json"):
                        st.track(it_dir / name)
                    continue
                result = evaluate_checkpoint(spec, run, engine, adapter=str(adapter_dir), out_dir=it_dir, spec_dir=spec_dir)
                unload_local_models()  # each adapter's serving copy is done once measured
            results[iteration] = result
            per_hyp = per_hypothesis_asr(it_dir / "samples.jsonl")
            section = _log_section(iteration, choice, result, train_info, per_hyp)
            log_parts.append(section)
            history.append(history_entry(iteration, choice, _hyperparams_of(choice, spec), result, baseline, spec, per_hyp))
            for name in ("choice.json", "train.json", "result.json"):
                st.track(it_dir / name)
        del model, tokenizer

        st.write_text("experiment_log.md", "# Training\n\n" + "".join(log_parts[1:]))
        st.write_jsonl("history.jsonl", history)
        selection = select_checkpoint(
            iteration_result(0, baseline),
            [iteration_result(i, r) for i, r in results.items()],
            asr_target=spec.training.target_asr,
            capability_tolerance=spec.gate.max_capability_drop,
        )
        held_out = {"baseline": baseline.held_out_figures(), **{str(i): r.held_out_figures() for i, r in results.items()}}
        st.write_json("selection.json", {**selection.model_dump(mode="json"), "held_out": held_out, "held_out_note": HELD_OUT_NOTE})
        chosen = selection.chosen
        best = {
            "iteration": chosen,
            "reason": selection.reason,
            "adapter": None if chosen == "baseline" else str((tdir / f"iteration_{chosen}" / "adapter").relative_to(run.root)),
            "result": "train/baseline/result.json" if chosen == "baseline" else f"train/iteration_{chosen}/result.json",
        }
        st.write_json("best.json", best)
        st.counts.update(iterations=len(results), chosen=chosen, **({"failed_iterations": failed} if failed else {}))
        st.notes.append(selection.reason)
        for role, used in usage_delta(usage_before, engine.usage).by_role.items():
            st.usage[role] = RoleUsage(**used.model_dump())
    return st.manifest


def train_record(it_dir: Path) -> dict[str, Any]:
    """An iteration's train.json; after a crash between saving the adapter and writing train.json, the same record
    the trainer saved inside the adapter folder, written back as train.json."""
    from a3cli.train._sft import RESULT_FILE

    path = it_dir / "train.json"
    if not path.exists():
        write_json(path, read_json(it_dir / "adapter" / RESULT_FILE))
    return read_json(path)


def finite_losses(train_info: dict[str, Any]) -> bool:
    """False when any step's loss was NaN or infinite (JSON writes them as NaN/Infinity, or null)."""
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in train_info.get("losses") or [])


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _hypothesis_table(task_rows: list[dict[str, Any]], baseline_path: Path) -> list[dict[str, Any]]:
    counts: dict[str, int] = defaultdict(int)
    for row in task_rows:
        if row.get("kind") == "harmful":
            counts[str(row.get("hypothesis_id"))] += 1
    baseline = read_json(baseline_path) if baseline_path.exists() else {}
    per_hyp = baseline.get("per_hypothesis", {}) if isinstance(baseline, dict) else {}
    return [{"id": h, "train_harmful_probes": n, "baseline": per_hyp.get(h)} for h, n in sorted(counts.items())]


def load_best(run: RunDir) -> dict[str, Any]:
    return read_json(run.path(STAGE, "best.json"))
