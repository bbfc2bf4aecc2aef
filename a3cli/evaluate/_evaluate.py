"""`evaluate_checkpoint`: one model (optionally with a LoRA adapter) measured on the run's validation and OOD probes,
on capability benchmarks, and for drift from the base model. Used by `a3 eval` and after every training iteration."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from a3cli._io import read_jsonl, write_json, write_jsonl
from a3cli.errors import A3Error, InfrastructureError, UsageError
from a3cli.evaluate._capability_cache import (
    CAPABILITY_RESULT_KIND,
    KL_MAX_NEW_TOKENS,
    benchmarks_of,
    cached_measurement,
    capability_cache_key,
)
from a3cli.evaluate._result import RESULT_FILE, SAMPLES_FILE, EvalResult, SplitName, SuiteResult, TaskCapability, unscored_share
from a3cli.evaluate._served_adapter import load_served_adapter
from a3cli.llm import Cache, RoleUsage, UsageReport
from a3cli.probes import Probe, ScoredProbe, score_probes, summarise
from a3cli.rundir import machine
from a3cli.spec import Message, ModelRef, Spec
from a3cli.suites import load_suite

SPLIT_FILES: dict[SplitName, str] = {"validation": "split/validation.jsonl", "ood": "split/ood.jsonl"}

_log = logging.getLogger(__name__)



def _run_root(run_dir: Any) -> Path:
    from a3cli.rundir import RunDir

    return run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)  # (a Path has a `.root` too: the drive)


def load_split(run_dir: Any, split: SplitName) -> list[Probe]:
    """The probes of one held-out split. Rows are the split stage's (a Probe's fields plus its baseline `result`),
    bare Probe objects, or scored rows that carry the probe under `probe`."""
    path = _run_root(run_dir) / SPLIT_FILES[split]
    if not path.is_file():
        raise InfrastructureError(f"{path} is missing: run `a3 split` first, or pass --run with the run directory that holds the splits")
    try:
        rows = read_jsonl(path)
        probes = []
        for r in rows:
            r = r["probe"] if isinstance(r, dict) and "probe" in r else r
            probes.append(Probe.model_validate({k: v for k, v in r.items() if k != "result"} if isinstance(r, dict) else r))
        return probes
    except (ValueError, ValidationError) as e:
        raise InfrastructureError(f"{path} is not a valid probe file ({str(e).splitlines()[0]})") from None


def target_override(spec: Spec, model: str | None, adapter: str | None, *, like_checkpoints: bool = False) -> ModelRef:
    """The spec's target with the model and adapter replaced, validated (an adapter needs provider `local`).

    A served target with `weights` runs an adapter locally on those weights (or, with `serve_adapters`, the caller
    has the server load it); `like_checkpoints` evaluates its base where its checkpoints are evaluated (locally unless
    the server loads adapters), so a baseline and its fine-tunes are measured by the same inference stack."""
    target = spec.target
    trainable = target.trainable()
    if model is None and target.provider != "local" and trainable is not None:
        if target.serve_adapters:
            if adapter is not None:
                return target  # the probes go to the server, which loads the adapter (evaluate_checkpoint does that)
        elif adapter is not None or like_checkpoints:
            target = trainable
    data = target.model_dump()
    if model is not None:
        data["model"] = model
    data["adapter"] = adapter
    try:
        return ModelRef.model_validate(data)
    except ValidationError as e:
        msg = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsageError(f"cannot evaluate {data['model']!r}{f' with adapter {adapter!r}' if adapter else ''}: {msg}") from None


def render_prompt(messages: Sequence[Message], prefill: str | None = None) -> str:
    """A lone user message verbatim; otherwise one `role: content` line per turn, plus any forced reply start."""
    msgs = list(messages)
    if len(msgs) == 1 and msgs[0].role == "user" and not prefill:
        return msgs[0].content
    text = "\n\n".join(f"[{m.role}] {m.content}" for m in msgs)
    if prefill:
        text += f"\n\n[assistant, forced start] {prefill}"
    return text


def sample_row(split: str, s: ScoredProbe) -> dict[str, Any]:
    """One line of samples.jsonl: what the report's sample browser shows."""
    return {
        "split": split,
        "hypothesis": s.probe.hypothesis_id,
        "probe_id": s.probe.id,
        "kind": s.probe.kind,
        "strategy": s.probe.strategy,
        "prompt": render_prompt(s.probe.messages, s.probe.prefill),
        "reply": s.reply,
        "verdict": s.verdict.label,
        "success": s.success,
        "reason": s.verdict.reason,
        "error": s.error or s.verdict.error,
    }


def usage_delta(before: UsageReport, after: UsageReport) -> UsageReport:
    """What was spent between two snapshots of one engine's (cumulative) usage."""
    by_role: dict[str, RoleUsage] = {}
    for role, u in after.by_role.items():
        b = before.by_role.get(role, RoleUsage())
        d = RoleUsage(**{f: getattr(u, f) - getattr(b, f) for f in RoleUsage.model_fields})
        if any(getattr(d, f) for f in RoleUsage.model_fields):
            by_role[role] = d
    total = RoleUsage()
    for u in by_role.values():
        total.add(u)
    return UsageReport(by_role=by_role, total=total, unpriced_models=after.unpriced_models)


def _kl_prompts(spec: Spec, spec_dir: Path | None) -> list[str]:
    """Held-out general prompts for the drift measure: the last `kl_prompts` single-turn prompts of the general data
    (training takes general prompts from the front of the same file)."""
    from a3cli.stages.general_data import general_source_path, load_general_conversations

    n = spec.capability.kl_prompts
    if n == 0:
        return []
    convs = load_general_conversations(general_source_path(spec, spec_dir), limit=1_000_000)
    singles = [c[-1].content for c in convs if len(c) == 1]
    return singles[-n:]


def _kl_reference(spec: Spec, ref: ModelRef, prompts: list[str], notes: list[str]) -> str | None:
    """What the drift of `ref` is measured against: "adapter_off" (the same peft model with its adapter disabled),
    "base" (the spec's local target loaded beside it), or None (not measured; a note says why)."""
    if not prompts:
        notes.append("KL drift not measured: capability.kl_prompts is 0")
        return None
    if ref.adapter:
        return "adapter_off"
    base = spec.target.trainable()
    if base is not None and ref.model != base.model:
        return "base"
    notes.append("KL drift not measured: the evaluated model is the spec's target itself (no adapter)")
    return None


def _capability_and_drift(
    spec: Spec,
    ref: ModelRef,
    notes: list[str],
    spec_dir: Path | None,
    *,
    cache: Cache | None = None,
    read_cache: bool = True,
) -> tuple[dict[str, TaskCapability], float | None]:
    """lm-eval capability and KL drift of `ref`. With `cache` (an a3cli.llm.Cache) the result is looked up under its
    content key first (unless `read_cache` is False, the engine's "refresh" mode) and stored after measuring, so an
    identical re-run loads no model at all. Failing to read or write the cache only costs the measurement."""
    from a3cli.assets import load_causal_lm
    from a3cli.capability import evaluate_capability, mean_token_kl
    from a3cli.llm import unload_local_models

    if ref.provider != "local":
        raise UsageError(
            f"capability is measured with lm-eval on local weights, and the target's provider is {ref.provider!r} with no "
            "`weights`; set target.weights to the weights the server runs, or pass --no-capability (capability=False)"
        )
    prompts = _kl_prompts(spec, spec_dir)
    kl_against = _kl_reference(spec, ref, prompts, notes)

    key: str | None = None
    if cache is not None:
        try:
            built = capability_cache_key(spec, ref, prompts, kl_against)
        except (A3Error, OSError) as e:  # the model or adapter is missing: loading it below says so properly
            _log.warning("No cache key for the capability measurement: %s", e)
            built = None
        key = built[0] if built else None
    if cache is not None and key is not None and read_cache:
        try:
            hit = cached_measurement(cache.get_result(key))
        except A3Error as e:
            _log.warning("Could not read the capability result cache: %s", e)
            hit = None
        if hit is not None:
            cached_capability, cached_kl, seconds = hit
            took = f", first measured in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
            notes.append(f"capability and KL drift from the cache (key {key[:16]}{took})")
            return cached_capability, cached_kl

    start = time.monotonic()
    unload_local_models()  # the engine's copy served the probes; free it before loading one for lm-eval
    model, tokenizer = load_causal_lm(ref.model, dtype=ref.dtype, device=ref.device, adapter=ref.adapter, revision=ref.revision)
    result = evaluate_capability(model, tokenizer, benchmarks_of(spec), batch_size=spec.capability.batch_size, seed=spec.training.seed)
    capability = {t: TaskCapability(accuracy=s.accuracy, stderr=s.stderr, n=s.n) for t, s in result.tasks.items()}
    kl: float | None = None
    if kl_against == "adapter_off":
        kl = mean_token_kl(None, model, tokenizer, prompts, max_new_tokens=KL_MAX_NEW_TOKENS, batch_size=spec.capability.batch_size)
    elif kl_against == "base":
        base_ref = spec.target.trainable()
        assert base_ref is not None  # _kl_reference says "base" only when there are base weights
        base, _ = load_causal_lm(base_ref.model, dtype=ref.dtype, device=ref.device, revision=base_ref.revision)
        kl = mean_token_kl(base, model, tokenizer, prompts, max_new_tokens=KL_MAX_NEW_TOKENS, batch_size=spec.capability.batch_size)
        del base
    if cache is not None and key is not None:
        payload = {
            "capability": {t: c.model_dump(mode="json") for t, c in capability.items()},
            "kl_drift": kl,
            "lm_eval_version": result.lm_eval_version,
            "seconds": round(time.monotonic() - start, 2),
        }
        try:
            cache.put_result(key, CAPABILITY_RESULT_KIND, ref.model, payload)
        except (A3Error, ValueError) as e:  # ValueError: a NaN that JSON cannot hold; the numbers are still returned
            _log.warning("Could not store the capability measurement in the cache: %s", e)
    return capability, kl


def _check_adapter_base(spec: Spec, ref: ModelRef, adapter: str, adapter_path: Path) -> None:
    """An adapter made for another base is a user error (exit 2), found now, before any probe runs: once loading
    started it would only show as every call failing. The base is the local model the adapter runs on (resolved, as
    it is needed anyway), or a served target's weights when they are already on this machine."""
    from a3cli.assets import check_adapter_fits, locate_local_model, resolve_local_model

    if ref.provider == "local":
        label, base = ref.model, resolve_local_model(ref.model, revision=ref.revision)
    else:
        weights = spec.target.trainable()
        if weights is None:
            return
        label, base = weights.model, locate_local_model(weights.model, revision=weights.revision)
    if base is None:
        return  # not downloaded yet: the loader checks the fit when it loads both
    for note in check_adapter_fits(base, adapter_path, base_label=label):
        _log.warning("%s", note)


def _local_fingerprint(ref: ModelRef) -> str | None:
    """The content fingerprint of a local model's weights (what the reply cache keys on); None for a remote model."""
    if ref.provider != "local":
        return None
    from a3cli.assets import resolve_local_model, weights_fingerprint

    try:
        return weights_fingerprint(resolve_local_model(ref.model, revision=ref.revision))
    except (A3Error, OSError):  # it was loaded and measured above, so this only fails if it vanished meanwhile
        return None


def _precision(ref: ModelRef) -> str | None:
    if ref.provider != "local":
        return None  # the server decides
    from a3cli.assets import pick_device, pick_dtype

    return str(pick_dtype(ref.dtype, pick_device(ref.device))).removeprefix("torch.")


def evaluate_checkpoint(
    spec: Spec,
    run_dir: Any,
    engine: Any,
    *,
    model: str | None = None,
    adapter: str | None = None,
    capability: bool = True,
    out_dir: Path,
    spec_dir: Path | None = None,
    like_checkpoints: bool = False,
    target: ModelRef | None = None,
) -> EvalResult:
    """Measure one checkpoint and write `result.json` and `samples.jsonl` into `out_dir`: the run's validation and OOD
    probes and the spec's external suites (relative suite paths are read from `spec_dir`).

    `model`/`adapter` override the spec's target (the local provider loads the adapter on top of the model); `run_dir`
    (a path or a RunDir) must hold `split/validation.jsonl` and `split/ood.jsonl`. With `capability` the spec's
    benchmarks run through lm-eval on the same weights and, for an adapter or a different local model, the mean
    per-token KL from the spec's base target is measured; both need a local model. That measurement is stored in the
    engine's cache under a content key (weights, adapter, benchmarks, seed, ...), so an identical re-run reuses it
    without loading the model (the engine's "refresh" mode measures again, "no_cache" neither reads nor writes). Failed target calls and
    unparseable verdicts are counted as unscored (the gate decides what that means); a missing split or adapter
    raises InfrastructureError, an impossible request (an adapter on a remote provider) UsageError.

    A served target with `weights` sends the probes to its server; an adapter runs locally on the weights, or on the
    server when `serve_adapters` is set (loaded there first); capability and drift are measured on the local weights.
    `like_checkpoints` measures the base where the checkpoints are measured (see target_override). `target` replaces
    the model outright (any provider: a full checkpoint's folder, another endpoint, `a3 compare`'s targets); its
    capability is measured only when it is local.
    """
    from a3cli.assets import resolve_local_model, weights_fingerprint

    start = time.monotonic()
    out_dir = Path(out_dir)
    if target is not None and (model is not None or adapter is not None):
        raise UsageError("give `target`, or `model`/`adapter`, not both")
    ref = target if target is not None else target_override(spec, model, adapter, like_checkpoints=like_checkpoints)
    adapter = ref.adapter if target is not None else adapter
    fingerprint = None
    if adapter is not None:
        # A Hub id is resolved (downloaded, or found in the HF cache) first: its errors say whether the Hub is
        # unreachable or the name is wrong, instead of "no folder" for both.
        try:
            adapter_path = resolve_local_model(adapter)
            fingerprint = weights_fingerprint(adapter_path)
        except FileNotFoundError as e:
            raise InfrastructureError(f"adapter not found: {e}") from None
        _check_adapter_base(spec, ref, adapter, adapter_path)
    # Where capability and drift are measured: the same weights (and adapter) on this machine.
    weights_ref = ref
    if ref.provider != "local" and spec.target.trainable() is not None and model is None and target is None:
        weights_ref = spec.target.trainable().model_copy(update={"adapter": adapter})  # type: ignore[union-attr]
        if adapter is not None and spec.target.serve_adapters:
            assert fingerprint is not None
            ref = load_served_adapter(spec.target, adapter, fingerprint)
    where = "locally" if ref.provider == "local" else f"through {ref.base_url}"
    served_notes = [f"probes answered {where} ({ref.model}{' + adapter' if adapter else ''})"] if spec.target.provider != "local" or ref.provider != "local" else []

    probes = {name: load_split(run_dir, name) for name in SPLIT_FILES}
    suites = [load_suite(s, spec_dir) for s in spec.suites]
    before = engine.usage
    groups: list[tuple[str, list[Probe]]] = [("validation", probes["validation"]), ("ood", probes["ood"])]
    groups += [(f"suite:{s.name}", list(s.probes)) for s in suites]
    ordered = [p for _, group in groups for p in group]
    scored = score_probes(spec, engine, ordered, model_override=ref, progress=f"eval {os.path.basename(ref.adapter or ref.model)}")
    by_split: dict[str, list[ScoredProbe]] = {}
    start_at = 0
    for name, group in groups:
        by_split[name] = scored[start_at : start_at + len(group)]
        start_at += len(group)

    notes: list[str] = list(served_notes)
    cap: dict[str, TaskCapability] | None = None
    kl: float | None = None
    if capability:
        # The engine's cache (None under --no-cache) also keeps whole capability/KL results; "refresh" re-measures.
        cache = getattr(engine, "cache", None)
        cache = cache if isinstance(cache, Cache) else None
        cap, kl = _capability_and_drift(spec, weights_ref, notes, spec_dir, cache=cache, read_cache=getattr(engine, "mode", "normal") == "normal")
    else:
        notes.append("capability and KL drift not measured (capability=False)")

    errors: list[str] = []
    for s in scored:
        if s.error and s.error not in errors:
            errors.append(s.error)
    val, ood = summarise(by_split["validation"]), summarise(by_split["ood"])
    suite_results = {
        s.name: SuiteResult(kind=s.kind, metrics=summarise(by_split[f"suite:{s.name}"]), source=s.source, prompts_sha256=s.prompts_sha256)
        for s in suites
    }
    result = EvalResult(
        model=ref.model,
        provider=ref.provider,
        model_fingerprint=_local_fingerprint(ref),
        adapter=ref.adapter or adapter,
        adapter_fingerprint=fingerprint,
        validation=val,
        ood=ood,
        suites=suite_results,
        capability=cap,
        kl_drift=kl,
        unscored_share=unscored_share(val, ood, *(s.metrics for s in suite_results.values())),
        target_errors=errors[:5],
        usage=usage_delta(before, engine.usage),
        wall_time_s=round(time.monotonic() - start, 3),
        hardware=machine(),
        precision=_precision(ref),
        notes=notes,
    )
    write_jsonl(out_dir / SAMPLES_FILE, [sample_row(name, s) for name, rows in by_split.items() for s in rows])
    write_json(out_dir / RESULT_FILE, result.to_json())
    return result
