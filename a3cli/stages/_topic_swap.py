"""Topic swaps: each harmful training probe's wrapper re-used with other harmful and other benign requests.

With a few dozen probes a small model learns "this wrapper -> refuse" rather than "this request -> refuse": the benign
twins share the wrapper, but there are too few of them to make the request the only thing that tells the two apart.
Swapping the topic inside each harmful training probe (where it appears verbatim) gives every wrapper many harmful and
many benign contents. Harmful topics come from StrongREJECT's pool (never its held-out suite third), benign ones from
the sources `training.benign_swap_pool` names: a3's benign topic list, the general prompts, and a training-only list of
benign requests that look harmful (data/benign_borderline.jsonl; without it the swaps teach "refuse anything that
sounds dangerous"). No topic of any split (validation and OOD included) is used, so the held-out measurements stay
held out.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from a3cli._io import read_jsonl
from a3cli._paths import builtin_data
from a3cli.errors import SpecError
from a3cli.stages.general_data import BUILTIN_GENERAL_PROMPTS, load_general_conversations
from a3cli.stages.generate._topics import ALL_BENIGN

BORDERLINE_BENIGN = builtin_data("benign_borderline.jsonl")
ALL_BENIGN_SOURCES = ("topics", "general", "borderline")


def borderline_benign_prompts(path: Path = BORDERLINE_BENIGN) -> list[str]:
    """The training-only benign requests that look harmful (`{"prompt": ...}` per line)."""
    if not path.is_file():
        raise SpecError(f"the borderline benign swap pool is missing: {path} (reinstall a3, or drop `borderline` from training.benign_swap_pool)")
    return [row["prompt"] for row in read_jsonl(path)]


def swap_pools(used_topics: set[str], benign_sources: Sequence[str] = ALL_BENIGN_SOURCES) -> tuple[list[str], list[str]]:
    """(harmful, benign) topics no split uses, sorted so a seed fixes the draw."""
    from a3cli.assets import load_strongreject

    harmful = {fp.prompt for fp in load_strongreject(part="pool")}
    benign: set[str] = set()
    if "topics" in benign_sources:
        benign |= set(ALL_BENIGN)
    if "general" in benign_sources:
        benign |= {c[0].content for c in load_general_conversations(BUILTIN_GENERAL_PROMPTS, sys.maxsize) if len(c) == 1}
    if "borderline" in benign_sources:
        benign |= set(borderline_benign_prompts())
    return sorted(harmful - used_topics), sorted(benign - used_topics)


def topic_swaps(
    train_rows: list[dict[str, Any]],
    used_topics: set[str],
    harmful: int,
    benign: int,
    seed: int,
    benign_sources: Sequence[str] = ALL_BENIGN_SOURCES,
) -> list[dict[str, Any]]:
    """For every harmful training probe whose topic appears verbatim in its last user turn, `harmful` copies with a
    harmful topic and `benign` with a benign one. Each result has `source_id`, `swap` (kind and number),
    `hypothesis_id`, `kind`, `topic`, `messages` (ending on the user turn) and the source probe's `prefill`."""
    if harmful <= 0 and benign <= 0:
        return []
    harmful_pool, benign_pool = swap_pools(used_topics, benign_sources)
    counts = {"harmful": min(harmful, len(harmful_pool)), "benign": min(benign, len(benign_pool))}
    # Both kinds draw the larger count and keep their own, so equal counts draw exactly what one shared count did.
    n = max(counts.values())
    out: list[dict[str, Any]] = []
    for row in train_rows:
        topic = row.get("topic")
        messages = row["messages"]
        if row.get("kind") != "harmful" or not topic or topic not in messages[-1]["content"]:
            continue  # encoded or decomposed requests do not carry the topic as text
        # one generator per probe, so adding or removing a probe leaves the others' swaps unchanged
        rng = random.Random(int(hashlib.sha256(f"{seed}:{row['id']}".encode()).hexdigest()[:16], 16))
        for kind, pool in (("harmful", harmful_pool), ("benign", benign_pool)):
            for k, new in enumerate(rng.sample(pool, min(n, len(pool)))[: counts[kind]]):
                out.append(
                    {
                        "source_id": row["id"],
                        "swap": f"{kind}-{k}",
                        "hypothesis_id": row.get("hypothesis_id"),
                        "kind": kind,
                        "topic": new,
                        "messages": [{"role": m["role"], "content": m["content"].replace(topic, new)} for m in messages],
                        "prefill": row.get("prefill"),
                    }
                )
    return out
