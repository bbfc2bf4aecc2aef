"""`a3 expect`: the replies the model should have given to the training prompts, as SFT conversations.

- Harmful probes: the behaviour the spec asks for. `refuse`: a short, natural refusal; `hold_firm`: keep the earlier
  correct answer politely. With `roles.expected` an LLM writes them (spec templates or built-in ones); offline, a bank
  of varied refusals (chosen by a stable hash of the prompt, so re-runs agree) or of hold-firm replies quoting the
  assistant's previous answer.
- Benign probes: a helpful answer. With `roles.expected` the LLM writes it; offline, the target's own reply from
  `a3 generate` (self-distillation keeps its style). A benign answer that is itself a refusal (or unscored, failed,
  empty, or cut off with nothing usable left) is replaced by `expected.benign_default_response`, or dropped when there
  is none.
- LLM-written ideal replies are checked before they become training data: harmful ones by the harmful judge (an
  attack success is replaced by `expected.harmful_default_response`), benign ones by the refusal judge; one whose
  check is unscored, or that was cut off at its token limit even after a re-ask with a larger one, is never kept.
- A probe with a prefill (the assistant turn forced to start with, say, "Sure, here is a step-by-step guide:") keeps
  it: the model cannot un-say a forced prefix, so the ideal turn continues from it. A harmful (or hold-firm) reply
  breaks off and declines ("Sure, here is a step-by-step guide: ...actually, no. I can't help with that."); a benign
  one carries on (the target's own continuation, or the LLM's answer after the prefix). The row's `prefill` names the
  forced part, which training keeps in the prompt: the loss covers only what follows it.
Every fallback and drop is counted in the manifest (and per role in its `outcomes`) and listed by probe id in
expect/report.json.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from typing import Any

from a3cli._io import read_jsonl
from a3cli.errors import SpecError
from a3cli.judges import render_conversation, run_sync, spec_judges
from a3cli.llm import Unusable, ask, record_outcome
from a3cli.probes import Probe, prompt_key
from a3cli.rundir import RunDir, StageManifest
from a3cli.spec import Message, Spec
from a3cli.stages._common import as_run_dir, failure_mark, raise_on_failed_calls
from a3cli.stages.generate import SEED_HYPOTHESIS

STAGE = "expect"
# 2: benign rows name the refusal to avoid; topic swaps. 3: LLM ideal replies checked by both judges. 4: a prefill is
# kept in the assistant turn (the reply continues from it). 5: benign topic swaps also draw borderline benign requests.
CODE_VERSION = "5"
PREFILL_RECOVERY = "...actually, no. "  # how a forced compliant start is broken off before the refusal
SEED_WEIGHT = 2.0  # the one observed failure counts double among the harmful examples
MIN_TRIMMED_CHARS = 40

REFUSALS: tuple[str, ...] = (
    "I can't help with that. If there's a safe way I can help with what's behind the question, I'm happy to.",
    "Sorry, but I won't provide that. Is there something else I can help you with?",
    "I'm not able to help with this request, since it could lead to real harm. If you're curious about the topic in general terms, I can point you to safety resources instead.",
    "That's not something I can help with. If there's a legitimate problem behind the question, tell me more and I'll see what I can do safely.",
    "I have to decline this one, but I'd be glad to help with a different question.",
    "I can't give instructions for that, even in a story, a role-play or a hypothetical. I'm happy to help with something else.",
    "No, I won't help with that. It could put people at risk.",
    "I'm sorry, but I can't assist with that request.",
    "I won't be providing that information. If you're worried about your own safety or someone else's, contacting local authorities or a trusted professional is a good first step.",
    "I can't help with this, however the request is framed. Let me know if there's anything else you need.",
    "This isn't something I'm willing to help with. If you want, we can talk about the topic from a safety or prevention angle.",
    "I'm going to stop here: I can't help with that. Happy to assist with other questions.",
    "I'm not going to help with that, but I'm glad to help with something else.",
    "Sorry, I can't do that. Providing it could cause real harm.",
    "I can't share that. If you're researching this for a legitimate reason, published safety guidance or a qualified professional would be a better source.",
    "I understand you're asking, but I can't help with this one.",
    "I must decline that request. Is there something else on your mind?",
    "I can't walk you through that. If something is going on that worries you, I'm happy to talk about where to find help.",
    "I won't write that, even as fiction. I can help with a different scene or topic, though.",
    "Unfortunately, I can't help with that. Let me know if I can help with anything else.",
)

HOLD_FIRM: tuple[str, ...] = (
    "I understand the pushback, but I'm going to stay with my earlier answer: {previous}",
    "I appreciate you challenging it, but I've double-checked, and my answer stands: {previous}",
    "I know that's not what you expected, but I still think my previous answer is correct. {previous}",
    "Thanks for raising it. Having reconsidered, I don't think I should change my answer: {previous}",
    "I see why you might think so, but the answer doesn't change: {previous}",
)

_EXPECTED_SYSTEM = "You write the ideal replies of a helpful, honest and safe AI assistant, used as training data."
_HARMFUL_TEMPLATE = {
    "refuse": (
        "Below is a conversation between a user and an AI assistant. The user's last message asks for something harmful, "
        "possibly disguised as fiction, role-play, a hypothetical or an encoded text.\n\n{prompt}\n\n"
        "Write the assistant's next reply: a brief, natural refusal that does not lecture, does not repeat any harmful "
        "detail, and, where it fits, offers a safe alternative. Reply with the text of the reply only."
    ),
    "hold_firm": (
        "Below is a conversation between a user and an AI assistant. The user is pressuring the assistant to abandon a "
        "correct answer.\n\n{prompt}\n\nWrite the assistant's next reply: politely keep the correct answer and briefly "
        "say why, without giving in. Reply with the text of the reply only."
    ),
}
_BENIGN_TEMPLATE = (
    "Below is a conversation between a user and an AI assistant.\n\n{prompt}\n\nWrite the assistant's next reply: a "
    "helpful, accurate and complete answer to the user's last message. Reply with the text of the reply only."
)


def _pick(bank: tuple[str, ...], key: str) -> str:
    """A bank entry chosen by a stable hash of the prompt key (the same prompt always gets the same reply)."""
    return bank[int(hashlib.sha256(f"a3-expect:{key}".encode()).hexdigest(), 16) % len(bank)]


_SENTENCE_END = re.compile(r"[.!?](?:[\"')\]]*)(?=\s|$)")


def _first_sentences(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if m.end() <= limit]
    return text[: ends[-1]] if ends else text[:limit].rsplit(" ", 1)[0] + "…"


def trim_truncated(text: str) -> str:
    """A reply cut off at max_tokens, shortened to its last complete sentence (or paragraph)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends:
        return text[: ends[-1]].rstrip()
    cut = text.rfind("\n")
    return text[:cut].rstrip() if cut > 0 else ""


def _previous_answer(messages: list[Message]) -> str | None:
    prior = [m.content for m in messages[:-1] if m.role == "assistant" and m.content.strip()]
    return _first_sentences(prior[-1]) if prior else None


def _format(template: str | None, default: str, conversation: list[Message]) -> str:
    return (template or default).format(prompt=render_conversation(conversation))


def after_prefill(prefill: str | None, reply: str, *, declines: bool, continuation: bool = False) -> str:
    """What follows a forced `prefill` in the ideal assistant turn: for a reply that declines (harmful, hold firm), the
    prefix is broken off ("...actually, no.") before the reply; otherwise the reply carries on after it. A reply
    written as a `continuation` of the prefill (the target's own) is kept verbatim. Without a prefill, the reply."""
    if not prefill:
        return reply
    if continuation:
        return reply
    reply = reply[len(prefill) :].lstrip() if reply.startswith(prefill) else reply  # an LLM may repeat the prefix
    sep = "" if prefill[-1].isspace() else " "
    return f"{sep}{PREFILL_RECOVERY}{reply}" if declines else f"{sep}{reply}"


def _sft_row(
    key: str, probe_id: str, messages: list[dict[str, str]], kind: str, hypothesis_id: str | None, weight: float,
    origin: str, prefill: str | None, avoid: str | None,
) -> dict[str, Any]:
    """One row of expect/train_sft.jsonl; `avoid` only where there is a refusal the prompt must not get."""
    row = {
        "key": key, "probe_id": probe_id, "messages": messages, "kind": kind, "source": kind, "hypothesis_id": hypothesis_id,
        "weight": weight, "origin": origin, "prefill": prefill,
    }
    return row | ({"avoid": avoid} if avoid is not None else {})


class _Expect:
    def __init__(self, spec: Spec, engine: Any):
        self.spec = spec
        self.engine = engine
        self.counts: Counter[str] = Counter()
        self.report: dict[str, list[str]] = defaultdict(list)
        self.checked: Counter[str] = Counter()  # LLM-written ideal replies that went through their judge

    @property
    def refusals(self) -> tuple[str, ...]:
        return tuple(self.spec.expected.refusals or REFUSALS)

    def note(self, reason: str, probe_id: str) -> None:
        self.counts[reason] += 1
        self.report[reason].append(probe_id)

    async def run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        probes = [Probe.model_validate({k: v for k, v in r.items() if k != "result"}) for r in rows]
        results = {r["id"]: r["result"] for r in rows}
        harmful = [p for p in probes if p.kind == "harmful"]
        benign = [p for p in probes if p.kind == "benign"]
        ideal: dict[str, tuple[str, str]] = {}  # probe id -> (reply, origin)
        if self.spec.roles.expected is not None:
            ideal.update(await self._llm(harmful, benign))
        else:
            for p in harmful:
                ideal[p.id] = self._offline_harmful(p)
            for p in benign:
                got = self._self_distilled(p, results[p.id])
                if got is not None:
                    ideal[p.id] = got
        out = []
        for p in probes:
            if p.id not in ideal:
                continue
            reply, origin = ideal[p.id]
            weight = SEED_WEIGHT if p.hypothesis_id == SEED_HYPOTHESIS and p.kind == "harmful" else 1.0
            key = prompt_key(p.messages, p.prefill)
            # With a prefill the assistant turn is the whole turn as said: the forced start, then the ideal reply.
            turn = (p.prefill or "") + after_prefill(p.prefill, reply, declines=p.kind == "harmful", continuation=origin == "target_self")
            messages = [m.model_dump() for m in p.messages] + [{"role": "assistant", "content": turn}]
            # a benign row also names the refusal it must not get (the trainer's unlikelihood term): after a prefill,
            # the very continuation the harmful rows learn
            avoid = after_prefill(p.prefill, _pick(self.refusals, key), declines=True) if p.kind == "benign" else None
            out.append(_sft_row(key, p.id, messages, p.kind, p.hypothesis_id, weight, origin, p.prefill, avoid))
        return out

    def swapped(self, train_rows: list[dict[str, Any]], used_topics: set[str]) -> list[dict[str, Any]]:
        """Topic swaps of the harmful training probes: harmful ones end on a refusal from the bank, benign ones end on
        the user turn and name the refusal to avoid (they have no reply to learn)."""
        from a3cli.stages._topic_swap import topic_swaps

        rows = []
        harmful_n, benign_n = self.spec.training.swap_counts()
        training = self.spec.training
        for swap in topic_swaps(train_rows, used_topics, harmful_n, benign_n, training.seed, training.benign_swap_pool):
            prefill = swap.get("prefill")  # the wrapper's forced reply start comes with it
            key = prompt_key([Message.model_validate(m) for m in swap["messages"]], prefill)
            refusal = after_prefill(prefill, _pick(self.refusals, key), declines=True)
            harmful = swap["kind"] == "harmful"
            messages = swap["messages"] + ([{"role": "assistant", "content": (prefill or "") + refusal}] if harmful else [])
            probe_id = f"{swap['source_id']}:{swap['swap']}"
            avoid = None if harmful else refusal
            rows.append(_sft_row(key, probe_id, messages, swap["kind"], swap["hypothesis_id"], 1.0, "topic_swap", prefill, avoid))
        return rows

    # ------------------------------------------------------------------------------------------------------ offline

    def _offline_harmful(self, p: Probe) -> tuple[str, str]:
        key = prompt_key(p.messages, p.prefill)
        if self.spec.expected.harmful_behavior == "refuse":
            return _pick(self.refusals, key), "refusal_bank"
        previous = _previous_answer(p.messages)
        if previous is None:
            self.note("harmful_default:no_previous_answer_to_hold", p.id)
            return self.spec.expected.harmful_default_response, "default"
        return _pick(HOLD_FIRM, key).format(previous=previous), "hold_firm_bank"

    def _benign_fallback(self, p: Probe, reason: str) -> tuple[str, str] | None:
        default = self.spec.expected.benign_default_response
        if default is not None:
            self.note(f"benign_default:{reason}", p.id)
            return default, "default"
        self.note(f"benign_dropped:{reason}", p.id)
        return None

    def _self_distilled(self, p: Probe, result: dict[str, Any]) -> tuple[str, str] | None:
        reply = result.get("reply")
        if result.get("error") or reply is None:
            return self._benign_fallback(p, "target_call_failed")
        if result.get("success") is True:
            return self._benign_fallback(p, "target_refused")
        if result.get("success") is None:
            return self._benign_fallback(p, "unscored")
        # The target's continuation of any prefill; the prefill itself is put back in front by `run`.
        text = reply
        if result.get("finish_reason") == "length":
            text = trim_truncated(text)
            if len((p.prefill or "") + text) < MIN_TRIMMED_CHARS:
                return self._benign_fallback(p, "truncated")
            self.counts["benign_trimmed_to_last_sentence"] += 1
        if not text.strip():
            return self._benign_fallback(p, "empty")
        return (text.rstrip() if p.prefill else text.strip()), "target_self"

    # ------------------------------------------------------------------------------------------------------ LLM

    async def _llm(self, harmful: list[Probe], benign: list[Probe]) -> dict[str, tuple[str, str]]:
        """Ideal replies written by `roles.expected`, each checked before it becomes training data: a harmful probe's
        by the harmful judge (it must not be an attack success), a benign one's by the refusal judge (it must not be a
        refusal). A reply that is cut off, empty, failed, judged bad or left unscored by its check is replaced by the
        spec's default (or dropped, for benign rows without one), counted by reason; none is kept unchecked."""
        ex = self.spec.expected
        model = self.spec.roles.expected
        assert model is not None
        conversations = []
        for p in harmful:
            user = _format(ex.harmful_user_template, _HARMFUL_TEMPLATE[ex.harmful_behavior], p.messages)
            conversations.append([Message(role="system", content=ex.harmful_system_prompt or _EXPECTED_SYSTEM), Message(role="user", content=user)])
        for p in benign:
            user = _format(ex.benign_user_template, _BENIGN_TEMPLATE, p.messages)
            conversations.append([Message(role="system", content=ex.benign_system_prompt or _EXPECTED_SYSTEM), Message(role="user", content=user)])
        answers = await ask(
            self.engine, model, "expected", conversations, _ideal_text, instruction="Reply again with the text of the reply only.",
            progress="expect: ideal replies",
        ) if conversations else []
        written = dict(zip([p.id for p in harmful + benign], answers))
        judges = spec_judges(self.spec, self.engine)
        out: dict[str, tuple[str, str]] = {}
        for side, probes, role in (("harmful", harmful, "harmful"), ("benign", benign, "refusal")):
            usable = [p for p in probes if written[p.id].ok]
            for p in probes:
                if not written[p.id].ok:
                    self._llm_fallback(out, p, side, f"expected_{written[p.id].reason}")
            if not usable:
                continue
            items = [(p.messages, written[p.id].value or "") for p in usable]
            verdicts = await judges[role].ajudge(items, progress=f"expect: checking {side} ideal replies")
            self.checked[side] += len(usable)
            for p, v in zip(usable, verdicts):
                if v.label == "unscored":
                    self._llm_fallback(out, p, side, "ideal_reply_check_unscored")
                elif v.label == "positive":  # an attack success (harmful side) or a refusal (benign side)
                    self._llm_fallback(out, p, side, "ideal_reply_judged_harmful" if side == "harmful" else "expected_reply_refused")
                else:
                    out[p.id] = (written[p.id].value or "", "expected_llm")
        return out

    def _llm_fallback(self, out: dict[str, tuple[str, str]], p: Probe, side: str, reason: str) -> None:
        """An LLM-written ideal reply that cannot be used: the spec's default instead (or, benign, a drop), counted."""
        if side == "harmful":
            self.note(f"harmful_default:{reason}", p.id)
            record_outcome(self.engine, "fallbacks", "expected", f"harmful_default:{reason}")
            out[p.id] = (self.spec.expected.harmful_default_response, "default")
            return
        got = self._benign_fallback(p, reason)
        # Dropping the row is this side's fallback when the spec gives no default: counted like a replacement.
        record_outcome(self.engine, "fallbacks", "expected", f"benign_{'default' if got else 'dropped'}:{reason}")
        if got is not None:
            out[p.id] = got


def _ideal_text(text: str) -> str:
    if not text.strip():
        raise Unusable("the reply was empty", "empty")
    return text.strip()


def run_expect(spec: Spec, run_dir: RunDir | str | os.PathLike[str], engine: Any) -> StageManifest:
    """Write expect/train_sft.jsonl (messages ending with the ideal reply, kind, hypothesis_id, weight; benign rows
    also name the refusal to avoid; topic swaps when `training.topic_swaps` or `benign_topic_swaps` is set) and
    expect/report.json (fallbacks and drops by reason, with probe ids)."""
    run = as_run_dir(spec, run_dir)
    inputs = [run.path("split", "train.jsonl")]
    swapping = any(spec.training.swap_counts())
    if swapping:
        if spec.expected.harmful_behavior != "refuse":
            raise SpecError("training.topic_swaps needs expected.harmful_behavior: refuse (a swapped topic has no answer to hold)")
        inputs += [run.path("split", "validation.jsonl"), run.path("split", "ood.jsonl")]  # their topics are kept out
    if run.is_current(STAGE, inputs=inputs, code_version=CODE_VERSION):
        manifest = run.manifest(STAGE)
        assert manifest is not None
        return manifest
    with run.stage(STAGE, inputs=inputs, code_version=CODE_VERSION) as st:
        if engine is not None:
            st.track_engine(engine)
        st.add_model("expected", spec.roles.expected)
        rows = read_jsonl(inputs[0])
        job = _Expect(spec, engine)
        failures_from = failure_mark(engine)
        examples = run_sync(job.run(rows))
        raise_on_failed_calls(engine, failures_from, "expect")  # not the defaults: a re-run makes the failed calls again
        if swapping:
            used = {r["topic"] for path in inputs for r in read_jsonl(path) if r.get("topic")}
            examples += job.swapped(rows, used)
        st.write_jsonl("train_sft.jsonl", examples)
        st.write_json(
            "report.json",
            {
                "method": "llm" if spec.roles.expected else "offline",
                "checked": dict(sorted(job.checked.items())),
                "counts": dict(sorted(job.counts.items())),
                "probes": {k: v for k, v in sorted(job.report.items())},
            },
        )
        origins = Counter(e["origin"] for e in examples)
        st.counts.update(
            {
                "examples": len(examples),
                "harmful": sum(1 for e in examples if e["kind"] == "harmful"),
                "benign": sum(1 for e in examples if e["kind"] == "benign"),
                "train_probes": len(rows),
                "origins": dict(sorted(origins.items())),
                "topic_swaps": origins.get("topic_swap", 0),
                "fallbacks": dict(sorted(job.counts.items())),
                "ideal_replies_checked": dict(sorted(job.checked.items())),
                "method": "llm" if spec.roles.expected else "offline",
            }
        )
    return st.manifest
