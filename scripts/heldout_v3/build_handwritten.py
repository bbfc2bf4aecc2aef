"""Assemble scripts/heldout_v3/part_handwritten.jsonl (the hand-written half of held-out judge set v3) from the
hw3_* modules, and check every row against the labelling guide's rules for its case.

    python scripts/heldout_v3/build_handwritten.py            # checks the rows, then writes the data file
    python scripts/heldout_v3/build_handwritten.py --check    # exit 1 if a row breaks a rule or the file differs

The case rules are the guide's, from scripts/label_rules.py, which imports nothing from a3cli: the set is written blind
to the judge it will measure.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import hw3_benign
import hw3_compliance
import hw3_empty
import hw3_misinfo
import hw3_refusals
from label_rules import RULES, case_errors, write_or_check

OUT = HERE / "part_handwritten.jsonl"
FIELDS = ("prompt", "response", "kind", "refused", "harmful", "case", "source", "note")

MIN_PER_CASE = 10


def _row(prompt, response, kind, refused, harmful, case, note):
    return {"prompt": prompt, "response": response, "kind": kind, "refused": refused, "harmful": harmful, "case": case,
            "source": "handwritten", "note": note}


def rows() -> list[dict]:
    out = []
    for items, case, refused, harmful in (
        (hw3_refusals.NO_STOCK_WORDS, "refusal_no_stock_words", True, False),
        (hw3_refusals.REDIRECT, "refusal_redirect", True, False),
        (hw3_refusals.LECTURE, "refusal_lecture", True, False),
        (hw3_refusals.PLAIN, "plain_refusal", True, False),
        (hw3_compliance.WITH_DISCLAIMER, "compliance_with_disclaimer", False, True),
        (hw3_compliance.AFTER_APOLOGY, "compliance_after_apology", False, True),
        (hw3_compliance.PARTIAL, "partial_compliance", False, True),
        (hw3_compliance.COMPLIANCE, "compliance", False, True),
        (hw3_misinfo.MISINFORMATION, "misinformation_essay", False, True),
    ):
        out += [_row(p, r, "harmful", refused, harmful, case, n) for p, r, n in items]
    out += [_row(p, r, "harmful", True, False, case, n) for p, r, case, n in hw3_misinfo.MISINFO_REFUSED]
    for items, case, refused in (
        (hw3_benign.WITH_KEYWORDS, "benign_helpful_with_keywords", False),
        (hw3_benign.REFUSED, "benign_refused", True),
        (hw3_benign.HELPFUL, "benign_helpful", False),
    ):
        out += [_row(p, r, "benign", refused, False, case, n) for p, r, n in items]
    out += [_row(p, r, "benign", refused, False, "benign_partial_refusal", n) for p, r, refused, n in hw3_benign.PARTIAL_REFUSAL]
    for items, case in ((hw3_empty.ECHO, "echo"), (hw3_empty.DEGENERATE, "degenerate"), (hw3_empty.VAGUE, "vague_nonanswer")):
        out += [_row(p, r, k, False, False, case, n) for k, p, r, n in items]
    return out


def check(rows: list[dict]) -> list[str]:
    """Each row's labels against its case, the stock-word and keyword rules, distinct prompts, coverage."""
    errors = []
    for i, r in enumerate(rows):
        where = f"row {i + 1} ({r['prompt'][:50]!r})"
        if not r["prompt"].strip():
            errors.append(f"{where}: empty prompt")
        errors += [f"{where}: {e}" for e in case_errors(r["case"], r["kind"], r["refused"], r["harmful"], r["response"])]
    prompts = Counter(r["prompt"] for r in rows)
    errors += [f"prompt used {n} times: {p!r}" for p, n in prompts.items() if n > 1]
    cases = Counter(r["case"] for r in rows)
    errors += [f"case {c}: {cases[c]} rows, want >= {MIN_PER_CASE}" for c in RULES if c != "compliance" and cases[c] < MIN_PER_CASE]
    return errors


def build(rows: list[dict]) -> str:
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)  # no blocks of one case in the file
    return "".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in shuffled)


def main(argv: list[str]) -> int:
    all_rows = rows()
    errors = check(all_rows)
    for e in errors:
        print(e)
    text = build(all_rows)
    if "--check" in argv:
        return write_or_check(OUT, text, argv, "build_handwritten.py") or (1 if errors else 0)
    if errors:
        return 1
    write_or_check(OUT, text, argv, "build_handwritten.py")
    counts = Counter((r["case"], r["kind"]) for r in all_rows)
    for (case, kind), n in sorted(counts.items()):
        print(f"  {case:30s} {kind:8s} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
