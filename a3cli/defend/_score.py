"""Measuring a defence: the probes run through the stages' `ascore_probes` (the one way a3 measures a model), with a
system prefix or in-context turns, and the cost of doing so read from the engine's usage meter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from a3cli.evaluate import usage_delta
from a3cli.judges import Judge, JudgeRole, run_sync
from a3cli.llm import UsageReport
from a3cli.probes import Probe, ScoredProbe, SplitMetrics, ascore_probes, summarise
from a3cli.spec import Message, Spec

# Per-probe in-context turns: a key naming the chosen examples (probes with the same key share one call group) and
# the turns themselves.
ICLFor = Callable[[Probe], tuple[tuple[str, ...], list[Message]]]


async def _ascore(
    spec: Spec,
    engine: Any,
    probes: Sequence[Probe],
    *,
    system_prefix: str | None,
    icl_messages: Sequence[Message] | None,
    icl_for: ICLFor | None,
    judges: dict[JudgeRole, Judge],
    progress: str | None,
) -> list[ScoredProbe]:
    try:
        if icl_for is None:
            return await ascore_probes(
                spec, engine, probes, system_prefix=system_prefix, icl_messages=icl_messages, judges=judges, progress=progress
            )
        # Per-request examples: one group per distinct example set, all groups in flight together so the engine can
        # still batch them (a local model gathers concurrent requests into one forward pass).
        groups: dict[tuple[str, ...], tuple[list[Message], list[int]]] = {}
        for i, probe in enumerate(probes):
            key, turns = icl_for(probe)
            groups.setdefault(key, (turns, []))[1].append(i)
        results = await asyncio.gather(
            *(
                ascore_probes(spec, engine, [probes[i] for i in idx], system_prefix=system_prefix, icl_messages=turns, judges=judges)
                for turns, idx in groups.values()
            )
        )
        out: list[ScoredProbe | None] = [None] * len(probes)
        for (_, idx), scored in zip(groups.values(), results):
            for i, s in zip(idx, scored):
                out[i] = s
        return [s for s in out if s is not None]
    finally:
        await engine.aclose()


def score(
    spec: Spec,
    engine: Any,
    probes: Sequence[Probe],
    *,
    judges: dict[JudgeRole, Judge],
    system_prefix: str | None = None,
    icl_messages: Sequence[Message] | None = None,
    icl_for: ICLFor | None = None,
    progress: str | None = None,
) -> list[ScoredProbe]:
    """Run and judge `probes` under one defence: a system prefix, fixed in-context turns, or per-probe turns."""
    if not probes:
        return []
    return run_sync(
        _ascore(
            spec, engine, probes, system_prefix=system_prefix, icl_messages=icl_messages, icl_for=icl_for, judges=judges,
            progress=progress,
        )
    )


def split_metrics(scored: Sequence[ScoredProbe]) -> SplitMetrics:
    return summarise(scored)


def rate_value(rate: Any) -> float:
    """A Rate's value for ranking; nothing scored ranks as the worst (1.0), never as a perfect 0."""
    return 1.0 if rate.rate is None else float(rate.rate)


def per_hypothesis_asr(scored: Sequence[ScoredProbe]) -> dict[str, dict[str, int]]:
    """Attack successes / scored harmful probes per hypothesis: what the agent reads to re-allocate examples."""
    out: dict[str, dict[str, int]] = {}
    for s in scored:
        if s.kind != "harmful" or s.success is None:
            continue
        row = out.setdefault(s.probe.hypothesis_id, {"successes": 0, "scored": 0})
        row["scored"] += 1
        row["successes"] += int(s.success)
    return out


# ---------------------------------------------------------------------------------------------------------------- cost


class CostMeter:
    """Reads the engine's usage and the clock at the start and at each `read()`."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.start_usage: UsageReport = engine.usage
        self.start = time.monotonic()

    def read(self) -> tuple[UsageReport, float]:
        return usage_delta(self.start_usage, self.engine.usage), round(time.monotonic() - self.start, 3)
