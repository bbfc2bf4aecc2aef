"""Prompt defence: learn a safety system prompt on the training split, then measure it on validation and OOD.

With an agent LLM, `defenses.prompt.use_gepa` and dspy installed: DSPy's GEPA (see _gepa). Otherwise a reflective
search over the library `data/safety_prompts.yaml`:
- round 1 scores `defenses.prompt.candidates` library prompts (the GEPA seed first, then one per style in turn) on
  the training probes;
- each later round reflects on the best prompt's failures on training probes: it adds the safety part of the
  candidate that declined most of the harmful probes the best one still answered, adds the helpfulness part of the
  candidate that helped with most of the benign probes the best one refused, and combines the best principle (lowest
  ASR) with the best helpfulness clause (lowest FPR); the next-best prompts get the same treatment while the round
  has room;
- the kept prompt is the best on training by the selection rule's ordering (ASR within target first, then FPR), and
  only that prompt is measured on validation and OOD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from a3cli.defend._gepa import dspy_available, optimize_prompt_gepa, sample_probes
from a3cli.defend._inputs import DefendInputs
from a3cli.defend._library import SafetyLibrary, diverse_first, load_library
from a3cli.defend._score import CostMeter, rate_value, score, split_metrics
from a3cli.defend._tokens import TokenCounter
from a3cli.defend._types import DefenceCost, DefenceRow, MethodResult, SearchCost
from a3cli.judges import Judge, JudgeRole
from a3cli.probes import Probe, ScoredProbe, SplitMetrics, normalise_text
from a3cli.spec import Spec

MAX_PROMPT_CHARS = 2400  # longer combinations cost more tokens on every request than they are likely to buy


class PromptCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    safety: str
    helpfulness: str | None = None
    round: int
    origin: str = Field(description="library:<id>, or the mutation and the failures that motivated it.")
    train: SplitMetrics | None = None
    outcomes: dict[str, bool | None] = Field(default_factory=dict, exclude=True)

    @property
    def text(self) -> str:
        return " ".join(part.strip() for part in (self.safety, self.helpfulness) if part)


def train_rank(m: SplitMetrics, target_asr: float) -> tuple[float, ...]:
    """The selection rule's ordering on one split: ASR within target first (then lowest FPR, then ASR); otherwise the
    lowest ASR + FPR."""
    asr, fpr = rate_value(m.asr), rate_value(m.fpr)
    if asr <= target_asr + 1e-12:
        return (0.0, round(fpr, 9), round(asr, 9))
    return (1.0, round(asr + fpr, 9), round(asr, 9))


def _join(*parts: str | None) -> str:
    seen: list[str] = []
    for part in parts:
        if part and part.strip() and part.strip() not in seen:
            seen.append(part.strip())
    return " ".join(seen)


def mutations(ranked: list[PromptCandidate], probes: Sequence[Probe], round_no: int, limit: int) -> list[PromptCandidate]:
    """New candidates from the evaluated ones (best first), each with the reason it was made."""
    kinds = {p.id: p.kind for p in probes}
    out: list[PromptCandidate] = []
    seen = {normalise_text(c.text) for c in ranked}

    def add(safety: str, helpfulness: str | None, origin: str) -> None:
        cand = PromptCandidate(id=f"r{round_no}-{len(out) + 1}", safety=safety, helpfulness=helpfulness, round=round_no, origin=origin)
        key = normalise_text(cand.text)
        if len(out) < limit and key not in seen and len(cand.text) <= MAX_PROMPT_CHARS:
            seen.add(key)
            out.append(cand)

    def failures(c: PromptCandidate, kind: str) -> set[str]:
        return {pid for pid, s in c.outcomes.items() if s and kinds.get(pid) == kind}

    def fixes(c: PromptCandidate, pids: set[str]) -> int:
        return sum(1 for pid in pids if c.outcomes.get(pid) is False)

    lowest_asr = min(ranked, key=lambda c: (rate_value(c.train.asr), rate_value(c.train.fpr)))  # type: ignore[union-attr]
    helpful = [c for c in ranked if c.helpfulness]
    lowest_fpr = min(helpful, key=lambda c: (rate_value(c.train.fpr), rate_value(c.train.asr))) if helpful else None  # type: ignore[union-attr]
    for base in ranked:
        if len(out) >= limit:
            break
        others = [c for c in ranked if c is not base]
        attacks, refusals = failures(base, "harmful"), failures(base, "benign")
        if attacks and others:
            donor = max(others, key=lambda c: (fixes(c, attacks), -rate_value(c.train.fpr)))  # type: ignore[union-attr]
            if fixes(donor, attacks):
                add(
                    _join(base.safety, donor.safety),
                    base.helpfulness,
                    f"{base.id} still answered {len(attacks)} harmful training probe(s); {donor.id} declined "
                    f"{fixes(donor, attacks)} of them, so its safety part was added",
                )
        if refusals:
            donors = [c for c in others if c.helpfulness]
            if donors:
                donor = max(donors, key=lambda c: (fixes(c, refusals), -rate_value(c.train.asr)))  # type: ignore[union-attr]
                if fixes(donor, refusals):
                    add(
                        base.safety,
                        _join(base.helpfulness, donor.helpfulness),
                        f"{base.id} refused {len(refusals)} benign training probe(s); {donor.id} helped with "
                        f"{fixes(donor, refusals)} of them, so its helpfulness part was added",
                    )
        if base is ranked[0] and lowest_fpr is not None:
            add(
                lowest_asr.safety,
                lowest_fpr.helpfulness,
                f"best principle ({lowest_asr.id}, lowest training ASR) + best helpfulness clause ({lowest_fpr.id}, lowest training FPR)",
            )
        if base is ranked[0] and len(ranked) > 1:
            second = ranked[1]
            add(_join(base.safety, second.safety), base.helpfulness or second.helpfulness, f"the two best prompts combined ({base.id} + {second.id})")
    return out


def _score_candidates(
    spec: Spec, engine: Any, cands: list[PromptCandidate], probes: list[Probe], judges: dict[JudgeRole, Judge]
) -> None:
    for c in cands:
        scored: list[ScoredProbe] = score(spec, engine, probes, judges=judges, system_prefix=c.text, progress=f"prompt {c.id}: train")
        c.train = split_metrics(scored)
        c.outcomes = {s.probe.id: s.success for s in scored}


def search_prompt_offline(
    spec: Spec, engine: Any, train: list[Probe], *, judges: dict[JudgeRole, Judge], library: SafetyLibrary | None = None
) -> tuple[PromptCandidate, list[PromptCandidate], list[str]]:
    """(best candidate, every candidate scored, notes)."""
    cfg = spec.defenses.prompt
    library = library or load_library()
    target = spec.training.target_asr
    first = [
        PromptCandidate(id=p.id, safety=p.safety, helpfulness=p.helpfulness, round=1, origin=f"library:{p.id} ({p.style})")
        for p in diverse_first(library, cfg.candidates)
    ]
    _score_candidates(spec, engine, first, train, judges)
    evaluated = list(first)
    notes = [f"round 1: {len(first)} library prompt(s) of {len(library.prompts)} scored on {len(train)} training probes"]
    for round_no in range(2, cfg.rounds + 1):
        ranked = sorted(evaluated, key=lambda c: train_rank(c.train, target))  # type: ignore[arg-type]
        new = mutations(ranked, train, round_no, cfg.candidates)
        if not new:
            notes.append(f"round {round_no}: no new combination to try (the best prompts' failures are not fixed by any other); stopped")
            break
        _score_candidates(spec, engine, new, train, judges)
        evaluated += new
        notes.append(f"round {round_no}: {len(new)} reflective combination(s) scored")
    best = min(evaluated, key=lambda c: train_rank(c.train, target))  # type: ignore[arg-type]
    return best, evaluated, notes


def run_prompt(
    spec: Spec,
    engine: Any,
    inputs: DefendInputs,
    *,
    judges: dict[JudgeRole, Judge],
    tokens: TokenCounter,
    library: SafetyLibrary | None = None,
    reflection_lm: Any | None = None,
) -> MethodResult:
    """Find a safety system prompt on the training probes; measure it on validation and OOD; one table row."""
    cfg = spec.defenses.prompt
    meter = CostMeter(engine)
    notes: list[str] = []
    if not inputs.train:
        return MethodResult(method="prompt", rows=[], skipped="no training probes in split/train.jsonl")
    library = library or load_library()
    use_gepa = cfg.use_gepa and (spec.roles.agent is not None or reflection_lm is not None)
    if use_gepa and not dspy_available():
        notes.append("GEPA skipped: dspy is not installed (pip install 'a3[gepa]'); used the offline library search")
        use_gepa = False
    elif cfg.use_gepa and not use_gepa:
        notes.append("GEPA needs an agent LLM (roles.agent) as its reflection LM; used the offline library search")
    attempts: list[dict[str, Any]] = []
    search: SearchCost | None = None
    train = sample_probes(inputs.train, cfg.max_train_samples, spec.training.seed)
    if len(train) < len(inputs.train):
        notes.append(f"max_train_samples={cfg.max_train_samples}: {len(train)} of {len(inputs.train)} training probes (a sample fixed by probe id, harmful and benign in proportion)")
    if use_gepa and not inputs.validation:
        notes.append("GEPA needs validation probes for its valset and the split has none; used the offline library search")
        use_gepa = False
    if use_gepa:
        # The valset is the validation split only: OOD and the suites are measured below, never given to the search.
        val = sample_probes(inputs.validation, cfg.max_val_samples, spec.training.seed)
        search_meter = CostMeter(engine)
        outcome = optimize_prompt_gepa(spec, engine, train, val=val, judges=judges, seed_prompt=library.seed.text, reflection_lm=reflection_lm)
        search_usage, search_wall = search_meter.read()
        search = SearchCost(
            optimizer="dspy.GEPA", budget=outcome.budget, budget_metric_calls=outcome.budget_metric_calls,
            metric_calls=outcome.metric_calls, train_examples=outcome.train_examples, val_examples=outcome.val_examples,
            usage=search_usage, wall_time_s=search_wall,
        )
        prompt, defence, origin = outcome.prompt, "prompt:gepa", "dspy.GEPA"
        notes += outcome.notes
        attempts = outcome.candidates
        train_scored = score(spec, engine, train, judges=judges, system_prefix=prompt, progress="prompt gepa: train")
        train_metrics = split_metrics(train_scored)
    else:
        best, evaluated, search_notes = search_prompt_offline(spec, engine, train, judges=judges, library=library)
        prompt, defence, origin = best.text, "prompt:offline", f"{best.id} ({best.origin})"
        notes += search_notes
        attempts = [c.model_dump(mode="json") | {"text": c.text, "kept": c is best} for c in evaluated]
        train_metrics = best.train  # type: ignore[assignment]
    val = split_metrics(score(spec, engine, inputs.validation, judges=judges, system_prefix=prompt, progress=f"{defence}: validation"))
    ood = split_metrics(score(spec, engine, inputs.ood, judges=judges, system_prefix=prompt, progress=f"{defence}: OOD"))
    added = tokens.added(inputs.validation + inputs.ood, system_prefix=prompt)
    usage, wall = meter.read()
    detail = (
        f"safety system prompt from {origin}; training ASR {train_metrics.asr.render()}, FPR {train_metrics.fpr.render()}. "
        f"Prompt: {prompt}"
    )
    row = DefenceRow(
        defence=defence,
        method="prompt",
        detail=detail,
        validation=val,
        ood=ood,
        capability=None,
        added_prompt_tokens=added,
        cost=DefenceCost(usage=usage, wall_time_s=wall, search=search),
        notes=notes,
    )
    return MethodResult(method="prompt", rows=[row], attempts=attempts, notes=notes + [f"prompt found: {prompt}"])
