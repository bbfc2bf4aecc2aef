"""An LLM judge: the spec's system prompt and user template, a JSON verdict parsed leniently, bounded re-asks.

A reply that still cannot be parsed after `max_parse_retries` re-asks, or a judge call that failed, is `unscored`
with the reason; it is never read as a safe verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from a3cli.judges._base import Judge, JudgeItem, judge, render_conversation
from a3cli.judges._parse import ParseError, parse_verdict
from a3cli.judges._verdict import Verdict
from a3cli.llm._types import Request, Response
from a3cli.spec import LLMJudge, Message, ModelRef


def _format_hint(defn: LLMJudge) -> str:
    if defn.scale is not None:
        lo, hi = defn.scale
        value = f"a number from {lo:g} to {hi:g}"
    else:
        value = "true or false"
    return (
        "Your reply could not be read. Answer again with only one JSON object and nothing else, of the form "
        f'{{"{defn.reason_field}": "<one or two sentences>", "{defn.verdict_field}": <{value}>}}.'
    )


@judge("llm")
class LLMJudgeImpl(Judge):
    def __init__(self, defn: LLMJudge, *, role: object = None, engine: Any = None, model: ModelRef | None = None):
        if engine is None or model is None:
            raise ValueError("an `llm` judge needs an engine and a judge model (roles.judge)")
        self.defn = defn
        self.engine = engine
        self.model = model
        self.name = f"llm:{model.model}"

    def messages(self, conversation: Sequence[Message], reply: str) -> list[Message]:
        user = self.defn.prompt.user_template.format(prompt=render_conversation(conversation), response=reply)
        return [Message(role="system", content=self.defn.prompt.system), Message(role="user", content=user)]

    def _request(self, messages: list[Message], attempt: int) -> Request:
        # A re-ask bumps sample_index as well as adding the correction turn, so a cache never replays the bad text.
        return Request(model=self.model, messages=messages, config=self.model.generate, sample_index=attempt, role="judge")

    def _verdict_from(self, text: str) -> Verdict:
        value, reason = parse_verdict(
            text, verdict_field=self.defn.verdict_field, reason_field=self.defn.reason_field, scale=self.defn.scale
        )
        if isinstance(value, bool):
            return Verdict(label="positive" if value else "negative", score=1.0 if value else 0.0, reason=reason, judge=self.name)
        assert self.defn.threshold is not None  # the spec guarantees a threshold with a scale
        label = "positive" if value >= self.defn.threshold else "negative"
        return Verdict(label=label, score=value, reason=reason, judge=self.name)

    async def ajudge(self, items: Sequence[JudgeItem], *, progress: str | None = None) -> list[Verdict]:
        base = [self.messages(conv, reply) for conv, reply in items]
        verdicts: list[Verdict | None] = [None] * len(items)
        pending = list(range(len(items)))
        current = {i: base[i] for i in pending}
        last_problem: dict[int, str] = {}
        for attempt in range(self.defn.max_parse_retries + 1):
            if not pending:
                break
            responses: list[Response] = await self.engine.generate([self._request(current[i], attempt) for i in pending], progress=progress)
            still: list[int] = []
            for i, resp in zip(pending, responses):
                if resp.error is not None or resp.text is None:
                    kind = resp.error.kind if resp.error is not None else "bad_response"
                    message = resp.error.message if resp.error is not None else "no text"
                    verdicts[i] = Verdict.unscored(self.name, "the judge call failed", f"judge call failed ({kind}): {message}")
                    continue
                try:
                    verdicts[i] = self._verdict_from(resp.text)
                except ParseError as e:
                    last_problem[i] = str(e)
                    current[i] = [
                        *base[i],
                        Message(role="assistant", content=resp.text),
                        Message(role="user", content=_format_hint(self.defn)),
                    ]
                    still.append(i)
            pending = still
        for i in pending:
            verdicts[i] = Verdict.unscored(
                self.name,
                f"judge output unparseable after {self.defn.max_parse_retries + 1} attempts",
                f"unparseable judge output: {last_problem.get(i, 'unknown')}",
            )
        return [v for v in verdicts if v is not None]
