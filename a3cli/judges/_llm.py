"""An LLM judge: the spec's system prompt and user template, a JSON verdict parsed leniently, bounded re-asks.

A reply cut at its token limit is asked again with a larger limit (a cut verdict is never read); a reply that does not
parse is asked again with what was wrong. One that still cannot be used after `max_parse_retries` re-asks, or a judge
call that failed, is `unscored` with the reason; it is never read as a safe verdict. Re-asks and unscored verdicts
are counted on the engine's outcome meter (role `judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from a3cli.judges._base import Judge, JudgeItem, judge, render_conversation
from a3cli.judges._parse import ParseError, parse_verdict
from a3cli.judges._verdict import Verdict
from a3cli.llm._outcomes import record_outcome
from a3cli.llm._types import Request, Response
from a3cli.spec import LLMJudge, Message, ModelRef, larger_limit, role_max_tokens


def _format_hint(defn: LLMJudge, problem: str = "") -> str:
    if defn.scale is not None:
        lo, hi = defn.scale
        value = f"a number from {lo:g} to {hi:g}"
    else:
        value = "true or false"
    why = f" ({problem})" if problem else ""
    return (
        f"Your reply could not be read{why}. Answer again with only one JSON object and nothing else, of the form "
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

    def _request(self, messages: list[Message], attempt: int, max_tokens: int) -> Request:
        # A re-ask bumps sample_index as well as adding the correction turn, so a cache never replays the bad text.
        config = self.model.generate.model_copy(update={"max_tokens": max_tokens})
        return Request(model=self.model, messages=messages, config=config, sample_index=attempt, role="judge")

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
        limits = dict.fromkeys(pending, role_max_tokens(self.model.generate, "judge"))
        cut: set[int] = set()
        attempts = self.defn.max_parse_retries + 1
        for attempt in range(attempts):
            if not pending:
                break
            requests = [self._request(current[i], attempt, limits[i]) for i in pending]
            responses: list[Response] = await self.engine.generate(requests, progress=progress)
            still: list[int] = []
            for i, resp in zip(pending, responses):
                if resp.error is not None or resp.text is None:
                    kind = resp.error.kind if resp.error is not None else "bad_response"
                    message = resp.error.message if resp.error is not None else "no text"
                    verdicts[i] = Verdict.unscored(self.name, "the judge call failed", f"judge call failed ({kind}): {message}")
                    record_outcome(self.engine, "unusable", "judge", f"call_failed:{kind}")
                    continue
                if resp.finish_reason == "length":
                    # A cut verdict is never read, even when its start parses: ask the same again with more room.
                    cut.add(i)
                    last_problem[i] = f"cut off at its {limits[i]}-token limit (finish_reason length)"
                    limits[i] = larger_limit(limits[i])
                    still.append(i)
                    continue
                cut.discard(i)
                try:
                    verdicts[i] = self._verdict_from(resp.text)
                except ParseError as e:
                    last_problem[i] = str(e)
                    current[i] = [
                        *base[i],
                        Message(role="assistant", content=resp.text),
                        Message(role="user", content=_format_hint(self.defn, str(e))),
                    ]
                    still.append(i)
            if attempt < attempts - 1:
                for i in still:
                    record_outcome(self.engine, "reasks", "judge", "length" if i in cut else "unparseable")
            pending = still
        for i in pending:
            reason = "length" if i in cut else "unparseable"
            record_outcome(self.engine, "unusable", "judge", reason)
            verdicts[i] = Verdict.unscored(
                self.name,
                f"judge output {'cut off' if i in cut else 'unparseable'} after {attempts} attempts",
                f"{'cut-off' if i in cut else 'unparseable'} judge output: {last_problem.get(i, 'unknown')}",
            )
        return [v for v in verdicts if v is not None]
