"""Capability of an in-memory model through lm-evaluation-harness's Python API (its results object, never its stdout)."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from a3cli.capability._local_mmlu import local_mmlu_config
from a3cli.capability._types import LOCAL_MMLU, LOCAL_MMLU_CLOZE, LOCAL_TASKS, BenchmarkSpec, CapabilityResult, TaskScore
from a3cli.errors import InfrastructureError, MissingDependencyError, SpecError

_log = logging.getLogger(__name__)

# Which lm-eval metric stands for "accuracy", best first (mmlu_pro reports exact_match; gpqa reports acc and acc_norm).
_METRIC_PREFERENCE = ("acc", "exact_match", "acc_norm")
# Answer-text (cloze) scoring is reported length-normalised, as lm-eval's mmlu_continuation results usually are.
_TASK_METRIC_PREFERENCE = {LOCAL_MMLU_CLOZE: ("acc_norm", "acc")}


def _require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError("lm_eval", "Capability measurement") from e


@functools.lru_cache(maxsize=1)
def _hub_task_manager() -> Any:
    from lm_eval.tasks import TaskManager

    return TaskManager()  # indexes lm-eval's ~15k built-in task configs (several seconds), so once per process


@functools.lru_cache(maxsize=1)
def _empty_task_manager() -> Any:
    # Passed to simple_evaluate with pre-built tasks, so it does not index the built-in tasks again.
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def _load_hub_task(name: str) -> list[Any]:
    """Task/Group objects for an lm-eval task, group or tag name; building a task downloads its dataset."""
    tm = _hub_task_manager()
    if name not in tm.all_tasks:
        raise SpecError(f"lm-eval {_lm_eval_version()} knows no task, group or tag named {name!r}")
    try:
        loaded = tm.load([name])
    except (OSError, ImportError) as e:  # ConnectionError/OfflineModeIsEnabled, gated or missing dataset (FileNotFound)
        raise InfrastructureError(
            f"Could not load the lm-eval task {name!r}: its dataset is not available ({e}). "
            f"It needs the Hugging Face Hub (or a local HF datasets cache); offline, use {LOCAL_MMLU!r}."
        ) from e
    groups, tasks = loaded.get("groups") or {}, loaded["tasks"]
    if name in groups:
        return [groups[name]]
    if name in tasks:
        return [tasks[name]]
    return list(tasks.values())  # a tag: its tasks, reported only if lm-eval aggregates them


def _leaf_count(results: dict[str, Any], name: str) -> int:
    children = (results.get("group_subtasks") or {}).get(name)
    if children:
        return sum(_leaf_count(results, c) for c in children)
    n = (results.get("n-samples") or {}).get(name)
    return int(n["effective"]) if n else 0


def _as_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" when it has no stderr
    return None if math.isnan(f) else f


def _score(results: dict[str, Any], name: str, spec: BenchmarkSpec, num_fewshot: int | None) -> TaskScore:
    row = (results.get("results") or {}).get(name)
    if row is None:
        raise InfrastructureError(
            f"lm-eval returned no aggregate score for {name!r} (got {sorted(results.get('results') or {})}); "
            "name a task or a group rather than a tag"
        )
    keys = [k for k in row if "," in k and "_stderr," not in k]
    preference = _TASK_METRIC_PREFERENCE.get(name, _METRIC_PREFERENCE)
    for metric in preference:
        found = sorted((k for k in keys if k.split(",", 1)[0] == metric), key=lambda k: k != f"{metric},none")
        if found and _as_float(row[found[0]]) is not None:
            key = found[0]
            break
    else:
        raise InfrastructureError(f"lm-eval reported none of {preference} for {name!r} (metrics: {keys})")
    m, flt = key.split(",", 1)
    return TaskScore(
        task=spec.task,
        metric=key,
        accuracy=float(row[key]),
        stderr=_as_float(row.get(f"{m}_stderr,{flt}")),
        n=_leaf_count(results, name),
        num_fewshot=num_fewshot,
        limit=spec.limit,
    )


def evaluate_capability(
    model: Any,
    tokenizer: Any,
    benchmarks: Sequence[BenchmarkSpec],
    *,
    batch_size: int = 8,
    seed: int = 0,
) -> CapabilityResult:
    """Accuracy, stderr and n per benchmark for an in-memory causal LM (a peft model evaluates base + adapter).

    Runs one `simple_evaluate` per benchmark (limits and shot counts are per benchmark). Seeds are fixed, so the
    same model and benchmarks give the same numbers. The model is left in the train/eval mode it came in.
    """
    _require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    if not benchmarks:
        raise SpecError("No benchmarks to evaluate")
    names = [b.task for b in benchmarks]
    if len(set(names)) != len(names):
        raise SpecError(f"Each benchmark may appear once (got {names})")

    start = time.perf_counter()
    was_training = bool(getattr(model, "training", False))
    scores: dict[str, TaskScore] = {}
    try:
        # HFLM takes the model object as is (no copy, no device move) and puts it in eval mode.
        lm = _progress_lm(HFLM)(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        for spec in benchmarks:
            lm.a3_task = spec.task
            if spec.task in LOCAL_TASKS:
                shots = spec.num_fewshot or 0
                config, _n = local_mmlu_config(spec.limit, spec.subjects, seed, shots, task=spec.task)
                tasks = [config]
                limit = None  # the sample is already drawn, per subject
                result_name = spec.task
                # The config carries the shot count; simple_evaluate won't override a config that says 0 anyway.
                num_fewshot_arg = None
            else:
                tasks = _load_hub_task(spec.task)
                limit = spec.limit
                result_name = spec.task
                shots = spec.num_fewshot
                num_fewshot_arg = spec.num_fewshot
            results = simple_evaluate(
                model=lm,
                tasks=tasks,
                num_fewshot=num_fewshot_arg,
                limit=limit,
                task_manager=_empty_task_manager(),
                log_samples=False,
                bootstrap_iters=1000,  # only metrics without a closed-form stderr bootstrap; acc uses the formula
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
            )
            if results is None:  # only on non-zero ranks of a distributed launch, which a3 never starts
                raise InfrastructureError("lm-eval returned no results")
            if spec.task not in LOCAL_TASKS:  # what lm-eval actually used (a task configured 0-shot ignores overrides)
                shots = _configured_shots(results, result_name, default=shots)
            scores[spec.task] = _score(results, result_name, spec, shots)
            _log.info("capability %s: %s", spec.task, scores[spec.task].model_dump())
    finally:
        model.train(was_training)
    return CapabilityResult(
        tasks=scores, lm_eval_version=_lm_eval_version(), seed=seed, seconds=round(time.perf_counter() - start, 2)
    )


def _progress_lm(hflm: type) -> type:
    """HFLM that reports its loglikelihood requests through a3's progress (a bar, or plain lines in a CI log)
    instead of lm-eval's own tqdm bar, which writes carriage returns a log cannot show."""
    from a3cli._progress import Progress, progress_enabled

    class ProgressLM(hflm):  # type: ignore[misc, valid-type]
        a3_task = "lm-eval"
        _a3_bar: Progress | None = None

        def loglikelihood(self, requests: Any, disable_tqdm: bool = False) -> Any:
            if not progress_enabled() or self._a3_bar is not None:
                return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
            with Progress(f"lm-eval {self.a3_task}: loglikelihoods", len(requests)) as bar:
                self._a3_bar = bar
                try:
                    return super().loglikelihood(requests, disable_tqdm=True)
                finally:
                    self._a3_bar = None

        def _model_call(self, inps: Any, *args: Any, **kwargs: Any) -> Any:
            out = super()._model_call(inps, *args, **kwargs)
            if self._a3_bar is not None:
                self._a3_bar.advance(int(inps.shape[0]))  # rows of this batch (at most the requests left)
            return out

    return ProgressLM


def _configured_shots(results: dict[str, Any], name: str, default: int | None) -> int | None:
    shots = (results.get("n-shot") or {}).get(name)
    return int(shots) if isinstance(shots, int) else default


def _lm_eval_version() -> str:
    from a3cli.assets import package_version

    return package_version("lm_eval")
