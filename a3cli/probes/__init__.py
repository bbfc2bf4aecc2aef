"""Probes and how a3 measures a model on them: the probe model and its keys, running probes on a target and judging
the replies (`score_probes`), and the ASR/FPR summary (`summarise`). Generate, split, expect, train, eval and the
defences all measure through this one package, which sits beneath both `a3cli.stages` and `a3cli.evaluate`."""

from a3cli.probes._probes import (
    Probe,
    ProbeKind,
    ScoredProbe,
    SplitMetrics,
    ascore_probes,
    canonical_prompt,
    dedup_key,
    judged_reply,
    normalise_text,
    prompt_key,
    score_probes,
    summarise,
    target_messages,
)

__all__ = [
    "Probe",
    "ProbeKind",
    "ScoredProbe",
    "SplitMetrics",
    "ascore_probes",
    "canonical_prompt",
    "dedup_key",
    "judged_reply",
    "normalise_text",
    "prompt_key",
    "score_probes",
    "summarise",
    "target_messages",
]
