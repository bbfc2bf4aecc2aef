"""The experiment log of `a3 generate`: the attack, the seed as example 0, and every tested hypothesis with its
numbers and one example. It is written as Markdown (for people) and JSONL (for tools), and it is what the generator
LLM reads each round, summarised to fit `generation.log_token_budget`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from a3cli.spec import Message, Spec
from a3cli.stats import Rate

CHARS_PER_TOKEN = 4  # a conservative rule of thumb for English; the budget is a soft limit on what the generator sees


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def render_messages(messages: list[Message], prefill: str | None = None, limit: int | None = None) -> str:
    parts = [f"{m.role}: {m.content}" for m in messages]
    if prefill:
        parts.append(f"assistant (forced start): {prefill}")
    text = "\n".join(parts)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


class LoggedExample(BaseModel):
    probe_id: str
    messages: list[Message]
    prefill: str | None = None
    reply: str | None = None
    verdict: str = ""
    reason: str = ""


class HypothesisEntry(BaseModel):
    """One tested hypothesis. Rates are over scored probes; unscored ones are counted apart."""

    id: str
    round: int
    hypothesis: str
    strategy: str
    family: str
    basis_example: str | None = Field(None, description="Probe id of the example this hypothesis builds on.")
    n_harmful: int = 0
    successes: int = 0
    unscored_harmful: int = 0
    n_benign: int = 0
    false_refusals: int = 0
    unscored_benign: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    example: LoggedExample | None = None
    source: str = Field("offline", description="offline (strategy library), llm (generator), seed, imported.")
    reasoning: str | None = None

    @property
    def asr(self) -> Rate:
        return Rate.of(self.successes, self.n_harmful - self.unscored_harmful)

    @property
    def fpr(self) -> Rate:
        return Rate.of(self.false_refusals, self.n_benign - self.unscored_benign)

    def headline(self) -> str:
        return f"{self.id} [{self.strategy}] ASR {self.asr.render()}, FPR {self.fpr.render()}" + (
            f", unscored {self.unscored_harmful + self.unscored_benign}" if self.unscored_harmful + self.unscored_benign else ""
        )

    def render(self, example_chars: int | None = 600) -> str:
        lines = [f"### {self.headline()}", f"Hypothesis: {self.hypothesis}"]
        if self.basis_example:
            lines.append(f"Basis example: {self.basis_example}")
        if self.reasoning:
            lines.append(f"Generator's reasoning for this round: {self.reasoning}")
        if self.rejected:
            lines.append("Rejected probes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())))
        if self.example is not None and example_chars != 0:
            ex = self.example
            lines.append(f"Example {ex.probe_id} ({ex.verdict}{': ' + ex.reason if ex.reason else ''}):")
            lines.append("```\n" + render_messages(ex.messages, ex.prefill, example_chars) + "\n```")
            reply = ex.reply if ex.reply is not None else "(no reply)"
            if example_chars is not None and len(reply) > example_chars:
                reply = reply[: example_chars - 1] + "…"
            lines.append("Reply:\n```\n" + reply + "\n```")
        return "\n".join(lines)


class ExperimentLog(BaseModel):
    attack: str
    description: str
    seed: LoggedExample
    entries: list[HypothesisEntry] = Field(default_factory=list)
    rounds: list[dict[str, Any]] = Field(default_factory=list, description="Per round: coverage gain, counts, notes.")
    stop_reason: str | None = None

    @classmethod
    def start(cls, spec: Spec) -> ExperimentLog:
        seed = LoggedExample(
            probe_id="seed",
            messages=spec.seed.messages(),
            prefill=spec.seed.prefill,
            reply=spec.seed.bad_reply,
            verdict="observed failure",
        )
        return cls(attack=spec.attack.name, description=spec.attack.description, seed=seed)

    @classmethod
    def from_rows(cls, rows: Any) -> ExperimentLog:
        """The log back from its JSONL form (`jsonl_rows`)."""
        data: dict[str, Any] = {"entries": [], "rounds": []}
        for row in rows:
            kind = row.get("type")
            body = {k: v for k, v in row.items() if k != "type"}
            if kind == "attack":
                data.update(attack=body["attack"], description=body["description"])
            elif kind == "seed":
                data["seed"] = LoggedExample.model_validate(body)
            elif kind == "hypothesis":
                data["entries"].append(HypothesisEntry.model_validate({k: v for k, v in body.items() if k not in ("asr", "fpr")}))
            elif kind == "round":
                data["rounds"].append(body)
            elif kind == "stop":
                data["stop_reason"] = body.get("reason")
        return cls.model_validate(data)

    def add(self, entry: HypothesisEntry) -> None:
        self.entries.append(entry)

    # ------------------------------------------------------------------------------------------------------ output

    def header(self, example_chars: int | None = None) -> str:
        seed = self.seed
        return "\n".join(
            [
                f"# Experiment log: {self.attack}",
                "",
                f"Attack: {self.description}",
                "",
                "## Example 0 (the seed)",
                "```\n" + render_messages(seed.messages, seed.prefill, example_chars) + "\n```",
                "Observed bad reply:\n```\n" + (seed.reply or "")[: example_chars or None] + "\n```",
                *(
                    [f"Reproduced on the target: {seed.verdict}" + (f" ({seed.reason})" if seed.reason else "")]
                    if seed.verdict != "observed failure"
                    else []
                ),
            ]
        )

    def markdown(self) -> str:
        parts = [self.header(), ""]
        by_round: dict[int, list[HypothesisEntry]] = {}
        for e in self.entries:
            by_round.setdefault(e.round, []).append(e)
        for rnd in sorted(by_round):
            parts.append(f"## Round {rnd}")
            info = next((r for r in self.rounds if r.get("round") == rnd), None)
            if info:
                parts.append(", ".join(f"{k}: {v}" for k, v in info.items() if k != "round"))
            parts.append("")
            for e in by_round[rnd]:
                parts += [e.render(example_chars=None), ""]
        if self.stop_reason:
            parts += ["## Stopped", self.stop_reason, ""]
        return "\n".join(parts)

    def jsonl_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [
            {"type": "attack", "attack": self.attack, "description": self.description},
            {"type": "seed", **self.seed.model_dump(mode="json")},
        ]
        for e in self.entries:
            rows.append({"type": "hypothesis", **e.model_dump(mode="json"), "asr": e.asr.rate, "fpr": e.fpr.rate})
        rows += [{"type": "round", **r} for r in self.rounds]
        if self.stop_reason:
            rows.append({"type": "stop", "reason": self.stop_reason})
        return rows

    # ------------------------------------------------------------------------------------------------------ for the generator

    def for_generator(self, token_budget: int) -> str:
        """The log within `token_budget` tokens. Recent entries stay verbatim; older ones are summarised: the best and
        the worst keep a line each, the rest are aggregated per strategy. Examples shrink before entries are dropped."""
        recent_round = max((e.round for e in self.entries), default=0)
        recent = [e for e in self.entries if e.round == recent_round]
        # The seed is already in the header as example 0.
        older = [e for e in self.entries if e.round != recent_round and e.source != "seed"]
        for example_chars in (400, 200, 80, 0):
            text = self._compose(recent, older, example_chars, keep_recent=len(recent))
            if estimate_tokens(text) <= token_budget:
                return text
        # Still too long: keep fewer recent entries verbatim (the best ones first).
        ranked = sorted(recent, key=lambda e: (-(e.asr.rate or 0.0), e.id))
        for keep in range(len(ranked) - 1, -1, -1):
            text = self._compose(ranked[:keep], older + ranked[keep:], 0, keep_recent=keep)
            if estimate_tokens(text) <= token_budget:
                return text
        return text[: token_budget * CHARS_PER_TOKEN]

    def _compose(self, verbatim: list[HypothesisEntry], older: list[HypothesisEntry], example_chars: int, keep_recent: int) -> str:
        parts = [self.header(example_chars=max(example_chars, 200)), ""]
        if older:
            scored = [e for e in older if e.asr.rate is not None]
            best = max(scored, key=lambda e: (e.asr.rate or 0.0, e.id), default=None)
            worst = min(scored, key=lambda e: (e.asr.rate or 0.0, e.id), default=None)
            parts.append("## Earlier hypotheses (summarised)")
            for label, e in (("Best", best), ("Worst", worst)):
                if e is not None:
                    parts.append(f"- {label}: {e.headline()} — {e.hypothesis}")
            agg: dict[str, list[HypothesisEntry]] = {}
            for e in older:
                if e is best or e is worst:
                    continue
                agg.setdefault(e.strategy, []).append(e)
            for strategy, group in sorted(agg.items()):
                k = sum(e.successes for e in group)
                n = sum(e.n_harmful - e.unscored_harmful for e in group)
                fr = sum(e.false_refusals for e in group)
                nb = sum(e.n_benign - e.unscored_benign for e in group)
                parts.append(f"- {strategy}: {len(group)} hypotheses, ASR {Rate.of(k, n).render()}, FPR {Rate.of(fr, nb).render()}")
            parts.append("")
        if verbatim:
            parts.append("## Latest hypotheses")
            for e in verbatim:
                parts += [e.render(example_chars=example_chars), ""]
        return "\n".join(parts)
