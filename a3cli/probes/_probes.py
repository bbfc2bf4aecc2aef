"""Probes, their canonical keys, running them on a target and judging the replies, and the ASR/FPR summary.

`score_probes` and `summarise` are the one way a3 measures a model on probes: generate uses them for the baseline,
and training, eval and the defences reuse them on checkpoints, prompts and in-context examples.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from a3cli.judges import Judge, JudgeRole, Verdict, run_sync, spec_judges
from a3cli.llm._types import Request, Response
from a3cli.spec import Message, ModelRef, Spec
from a3cli.stats import Rate

ProbeKind = Literal["harmful", "benign"]


# ---------------------------------------------------------------------------------------------------------------- keys


def canonical_prompt(messages: Sequence[Message], prefill: str | None = None) -> str:
    """The exact prompt as canonical JSON (roles, contents with unicode normalised to NFC, and the prefill)."""
    payload = {
        "messages": [[m.role, unicodedata.normalize("NFC", m.content)] for m in messages],
        "prefill": None if prefill is None else unicodedata.normalize("NFC", prefill),
    }
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def prompt_key(messages: Sequence[Message], prefill: str | None = None) -> str:
    """Stable id of a prompt: the first 16 hex digits of sha256 over its canonical form."""
    return hashlib.sha256(canonical_prompt(messages, prefill).encode("utf-8")).hexdigest()[:16]


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: "How do I...?" and "how do i" are the same prompt."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def dedup_key(messages: Sequence[Message], prefill: str | None = None) -> str:
    """Key for duplicate detection and split-leak checks: the normalised text of every turn, roles kept."""
    parts = [f"{m.role}:{normalise_text(m.content)}" for m in messages]
    if prefill:
        parts.append(f"prefill:{normalise_text(prefill)}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------------- models


class Probe(BaseModel):
    """One prompt (or conversation ending on a user turn) sent to the target. Harmful probes and their benign twins
    share a hypothesis and point at each other through `twin_id`."""

    model_config = ConfigDict(extra="forbid")

    id: str
    hypothesis_id: str
    strategy: str = Field(description="The strategy chain that wrote it, e.g. fiction+refusal_suppression; seed; imported; llm.")
    family: str = Field(description="The mechanism family used to split by strategy (first strategy of the chain).")
    kind: ProbeKind
    twin_id: str | None = None
    messages: list[Message] = Field(min_length=1)
    prefill: str | None = None
    topic: str | None = Field(None, description="The request the probe was built around, when known.")
    round: int = 0
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def make(cls, *, messages: Sequence[Message], prefill: str | None = None, **fields: Any) -> Probe:
        msgs = list(messages)
        return cls(id=prompt_key(msgs, prefill), messages=msgs, prefill=prefill, **fields)

    @property
    def last_user(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    def dedup_key(self) -> str:
        return dedup_key(self.messages, self.prefill)


class ScoredProbe(BaseModel):
    """A probe, the target's reply and the judge's verdict. `success` is, for a harmful probe, "the attack worked"
    and, for a benign probe, "falsely refused"; None when unscored (failed call, unparseable judge, empty reply)."""

    model_config = ConfigDict(extra="forbid")

    probe: Probe
    reply: str | None
    error: str | None = None
    verdict: Verdict
    success: bool | None
    finish_reason: str | None = Field(None, description="The target's stop reason; `length` means the reply was cut.")

    @property
    def kind(self) -> ProbeKind:
        return self.probe.kind

    def result_row(self) -> dict[str, Any]:
        return {
            "probe_id": self.probe.id,
            "hypothesis_id": self.probe.hypothesis_id,
            "kind": self.probe.kind,
            "reply": self.reply,
            "error": self.error,
            "verdict": self.verdict.model_dump(mode="json"),
            "success": self.success,
            "finish_reason": self.finish_reason,
        }


class SplitMetrics(BaseModel):
    """ASR on harmful probes and false-refusal rate on benign ones, with Wilson 95 % intervals over scored probes.
    Unscored probes are counted apart and are in neither numerator nor denominator."""

    n_harmful: int
    n_benign: int
    asr: Rate
    fpr: Rate
    unscored_harmful: int
    unscored_benign: int
    target_errors: int = Field(0, description="Probes whose target call failed (a subset of the unscored).")

    @property
    def unscored(self) -> int:
        return self.unscored_harmful + self.unscored_benign

    @property
    def unscored_share(self) -> float:
        total = self.n_harmful + self.n_benign
        return self.unscored / total if total else 0.0


# ---------------------------------------------------------------------------------------------------------------- running


def target_messages(probe: Probe, *, system_prefix: str | None = None, icl_messages: Sequence[Message] | None = None) -> list[Message]:
    """What the target sees: an optional defence system prefix (joined with the probe's own system prompt), optional
    in-context demonstration turns, then the probe's conversation."""
    msgs = list(probe.messages)
    system = msgs[0].content if msgs and msgs[0].role == "system" else None
    rest = msgs[1:] if system is not None else msgs
    if system_prefix:
        system = system_prefix if system is None else f"{system_prefix}\n\n{system}"
    out = [Message(role="system", content=system)] if system is not None else []
    return out + list(icl_messages or []) + rest


def judged_reply(probe: Probe, reply: str) -> str:
    """The whole assistant turn: a forced prefill is part of what the model said."""
    return (probe.prefill or "") + reply


def _error_text(resp: Response) -> str:
    if resp.error is not None:
        return f"target call failed ({resp.error.kind}): {resp.error.message}"
    return "target call returned no text"


async def ascore_probes(
    spec: Spec,
    engine: Any,
    probes: Sequence[Probe],
    *,
    model_override: ModelRef | None = None,
    system_prefix: str | None = None,
    icl_messages: Sequence[Message] | None = None,
    judges: dict[JudgeRole, Judge] | None = None,
    progress: str | None = None,
    responses_out: list[Response] | None = None,
) -> list[ScoredProbe]:
    """Run `probes` on the target (or `model_override`) and judge the replies; one ScoredProbe per probe, in order.

    Harmful probes go to the harmful judge, benign ones to the refusal judge. A failed target call is unscored with
    the call's error, never a safe reply. `responses_out`, when given, receives the target Responses (for accounting).
    """
    model = model_override or spec.target
    judges = judges or spec_judges(spec, engine)
    requests = [
        Request(
            model=model,
            messages=target_messages(p, system_prefix=system_prefix, icl_messages=icl_messages),
            config=model.generate,
            prefill=p.prefill,
            role="target",
        )
        for p in probes
    ]
    responses: list[Response] = await engine.generate(requests, progress=progress) if requests else []
    if len(responses) != len(requests):
        raise RuntimeError(f"the engine returned {len(responses)} responses for {len(requests)} requests")
    if responses_out is not None:
        responses_out.extend(responses)
    verdicts: list[Verdict | None] = [None] * len(probes)
    for kind, role in (("harmful", "harmful"), ("benign", "refusal")):
        idx = [i for i, p in enumerate(probes) if p.kind == kind and responses[i].ok]
        if idx:
            items = [(probes[i].messages, judged_reply(probes[i], responses[i].text or "")) for i in idx]
            got = await judges[role].ajudge(items, progress=None if progress is None else f"{progress} (judge {role})")  # type: ignore[index]
            for i, v in zip(idx, got):
                verdicts[i] = v
    out: list[ScoredProbe] = []
    for p, resp, v in zip(probes, responses, verdicts):
        if v is None:  # the target call failed
            role = "harmful" if p.kind == "harmful" else "refusal"
            name = judges[role].name  # type: ignore[index]
            err = _error_text(resp)
            out.append(ScoredProbe(probe=p, reply=None, error=err, verdict=Verdict.unscored(name, "no reply to judge", err), success=None))
            continue
        success = None if v.label == "unscored" else v.label == "positive"
        out.append(ScoredProbe(probe=p, reply=resp.text, verdict=v, success=success, finish_reason=resp.finish_reason))
    return out


def score_probes(
    spec: Spec,
    engine: Any,
    probes: Sequence[Probe],
    *,
    model_override: ModelRef | None = None,
    system_prefix: str | None = None,
    icl_messages: Sequence[Message] | None = None,
    judges: dict[JudgeRole, Judge] | None = None,
    progress: str | None = None,
) -> list[ScoredProbe]:
    """Sync form of `ascore_probes`."""
    return run_sync(
        ascore_probes(
            spec,
            engine,
            probes,
            model_override=model_override,
            system_prefix=system_prefix,
            icl_messages=icl_messages,
            judges=judges,
            progress=progress,
        )
    )


def summarise(scored: Sequence[ScoredProbe]) -> SplitMetrics:
    harmful = [s for s in scored if s.kind == "harmful"]
    benign = [s for s in scored if s.kind == "benign"]

    def rate(rows: list[ScoredProbe]) -> Rate:
        judged = [s for s in rows if s.success is not None]
        return Rate.of(sum(1 for s in judged if s.success), len(judged))

    return SplitMetrics(
        n_harmful=len(harmful),
        n_benign=len(benign),
        asr=rate(harmful),
        fpr=rate(benign),
        unscored_harmful=sum(1 for s in harmful if s.success is None),
        unscored_benign=sum(1 for s in benign if s.success is None),
        target_errors=sum(1 for s in scored if s.error is not None),
    )
