"""Assemble data/judge_labels_heldout_v2.jsonl from the labelled SmolLM2 replies and the hand-written replies.

    python scripts/heldout_v2/build.py            # writes the data file
    python scripts/heldout_v2/build.py --check    # exit 1 if the data file differs from what this would write
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import hw_benign
import hw_benign_more
import hw_compliance
import hw_empty
import hw_extra
import hw_misinfo
import hw_refusals
from label_rules import write_or_check
from overlap_exclusions import HANDWRITTEN_PROMPTS, SMOLLM2_PROMPT_IDS
from smollm2_labels import DROPPED, LABELS

RAW = HERE / "smollm2_raw.jsonl"
OUT = HERE.parents[1] / "data" / "judge_labels_heldout_v2.jsonl"
MODE_NOTES = {
    "greedy": "SmolLM2 greedy",
    "sampled": "SmolLM2 sampled (T=0.8, top-p 0.95)",
    "safety_greedy": "SmolLM2 greedy under a safety system prompt",
    "safety_sampled": "SmolLM2 sampled (T=0.8, top-p 0.95) under a safety system prompt",
}


def _row(prompt, response, kind, refused, harmful, case, source, note):
    return {"prompt": prompt, "response": response, "kind": kind, "refused": refused, "harmful": harmful, "case": case,
                "source": source, "note": note}


def smollm2_rows() -> list[dict]:
    """One row per labelled reply; every reply is labelled or dropped, except replies to prompts left out for overlap."""
    raw = {f"{r['id']}/{r['mode']}": r for r in map(json.loads, RAW.open(encoding="utf-8"))}
    kept = {k for k, r in raw.items() if r["id"] not in SMOLLM2_PROMPT_IDS}
    unknown = (set(LABELS) | set(DROPPED)) - set(raw)
    both = set(LABELS) & set(DROPPED)
    unlabelled = kept - set(LABELS) - set(DROPPED)
    stale = set(SMOLLM2_PROMPT_IDS) - {r["id"] for r in raw.values()}
    if unknown or both or unlabelled or stale:
        raise SystemExit(f"labels out of step with the raw file: unknown {sorted(unknown)}, labelled and dropped "
                         f"{sorted(both)}, unlabelled {sorted(unlabelled)}, excluded ids not in it {sorted(stale)}")
    rows = []
    for key in sorted(set(LABELS) & kept):
        r, (case, refused, harmful, note) = raw[key], LABELS[key]
        text = MODE_NOTES[r["mode"]] + (f"; {note}" if note else "")
        rows.append(_row(r["prompt"], r["response"], r["kind"], refused, harmful, case, "smollm2", text))
    return rows


def handwritten_rows() -> list[dict]:
    rows = []
    harmful_sets = [
        (hw_refusals.NO_STOCK_WORDS, "refusal_no_stock_words", True, False),
        (hw_refusals.REDIRECT + hw_extra.REDIRECT, "refusal_redirect", True, False),
        (hw_refusals.LECTURE + hw_extra.LECTURE, "refusal_lecture", True, False),
        (hw_refusals.PLAIN + hw_extra.PLAIN, "plain_refusal", True, False),
        (hw_compliance.PARTIAL + hw_extra.PARTIAL, "partial_compliance", False, True),
        (hw_compliance.AFTER_APOLOGY + hw_extra.AFTER_APOLOGY, "compliance_after_apology", False, True),
        (hw_compliance.WITH_DISCLAIMER + hw_extra.WITH_DISCLAIMER, "compliance_with_disclaimer", False, True),
        (hw_compliance.COMPLIANCE + hw_extra.COMPLIANCE, "compliance", False, True),
        (hw_misinfo.MISINFORMATION, "misinformation_essay", False, True),
    ]
    for items, case, refused, harmful in harmful_sets:
        rows += [_row(p, r, "harmful", refused, harmful, case, "handwritten", n) for p, r, n in items]
    benign_sets = [
        (hw_benign.WITH_KEYWORDS + hw_benign_more.WITH_KEYWORDS + hw_extra.WITH_KEYWORDS, "benign_helpful_with_keywords", False),
        (hw_benign.REFUSED + hw_extra.BENIGN_REFUSED, "benign_refused", True),
        (hw_benign.HELPFUL + hw_benign_more.HELPFUL, "benign_helpful", False),
    ]
    for items, case, refused in benign_sets:
        rows += [_row(p, r, "benign", refused, False, case, "handwritten", n) for p, r, n in items]
    rows += [_row(p, r, "benign", refused, False, "benign_partial_refusal", "handwritten", n)
             for p, r, refused, n in hw_benign.PARTIAL_REFUSAL + hw_benign_more.PARTIAL_REFUSAL + hw_extra.PARTIAL_REFUSAL]
    for items, case in (
        (hw_empty.ECHO + hw_extra.ECHO, "echo"),
        (hw_empty.DEGENERATE + hw_extra.DEGENERATE, "degenerate"),
        (hw_empty.VAGUE, "vague_nonanswer"),
    ):
        rows += [_row(p, r, k, False, False, case, "handwritten", n) for k, p, r, n in items]
    stale = set(HANDWRITTEN_PROMPTS) - {r["prompt"] for r in rows}
    if stale:
        raise SystemExit(f"overlap_exclusions names hand-written prompts that no module has: {sorted(stale)}")
    return [r for r in rows if r["prompt"] not in HANDWRITTEN_PROMPTS]


def build() -> str:
    rows = smollm2_rows() + handwritten_rows()
    random.Random(15).shuffle(rows)  # no blocks of one case or source in the file
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    raise SystemExit(write_or_check(OUT, build(), sys.argv[1:], "build.py"))
