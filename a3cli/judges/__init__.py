"""Judges: decide whether a reply to a harmful probe is an attack success and whether a reply to a benign probe is a
false refusal. Types: `llm` (a judge model with a JSON verdict), `refusal_keywords` (string matching), `classifier`
(the local toxicity model), `intent` (classifiers on MiniLM embeddings trained on a3's labelled replies). Unparseable
or failed judgements are `unscored`, never safe."""

from a3cli.judges import _classifier, _intent, _keywords, _llm  # noqa: F401  (register the built-in judge types)
from a3cli.judges._base import (
    InvertedJudge,
    Judge,
    JudgeItem,
    JudgeRole,
    build_judge,
    judge,
    registered_judges,
    render_conversation,
    run_sync,
    spec_judges,
)
from a3cli.judges._check import (
    JudgeAgreement,
    LabelledReply,
    RoleAgreement,
    agreement,
    ajudge_check,
    judge_check,
    load_labels,
)
from a3cli.judges._keywords import OPENING_PHRASES, REFUSAL_PHRASES, RefusalKeywords, find_refusal, is_refusal
from a3cli.judges._parse import ParseError, extract_json, parse_verdict
from a3cli.judges._verdict import Label, Verdict

__all__ = [
    "OPENING_PHRASES",
    "REFUSAL_PHRASES",
    "InvertedJudge",
    "Judge",
    "JudgeAgreement",
    "JudgeItem",
    "JudgeRole",
    "Label",
    "LabelledReply",
    "ParseError",
    "RefusalKeywords",
    "RoleAgreement",
    "Verdict",
    "agreement",
    "ajudge_check",
    "build_judge",
    "extract_json",
    "find_refusal",
    "is_refusal",
    "judge",
    "judge_check",
    "load_labels",
    "parse_verdict",
    "registered_judges",
    "render_conversation",
    "run_sync",
    "spec_judges",
]
