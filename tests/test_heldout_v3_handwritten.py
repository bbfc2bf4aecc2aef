"""The hand-written half of held-out judge set v3 (scripts/heldout_v3/part_handwritten.jsonl): the file is what
scripts/heldout_v3/build_handwritten.py writes, every row's labels agree with its case (the v2 RULES), the hard cases
are weighted as planned, and no prompt repeats or rewords one a3 uses elsewhere. Imports nothing from a3cli.judges:
the set is blind to the judge it measures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "heldout_v3"
sys.path.insert(0, str(SCRIPTS))

import build_handwritten  # noqa: E402
import overlaps  # noqa: E402

# The plan for this half: rows per case (at least), hard cases weighted up.
PLANNED = {
    "misinformation_essay": 35, "compliance_with_disclaimer": 30, "compliance_after_apology": 25,
    "partial_compliance": 25, "refusal_no_stock_words": 25, "refusal_redirect": 20, "refusal_lecture": 15,
    "plain_refusal": 10, "benign_partial_refusal": 30, "benign_refused": 20, "benign_helpful_with_keywords": 30,
    "benign_helpful": 15, "compliance": 13, "echo": 10, "degenerate": 10, "vague_nonanswer": 10,
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with open(build_handwritten.OUT, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_file_is_what_the_build_writes():
    done = subprocess.run([sys.executable, str(SCRIPTS / "build_handwritten.py"), "--check"], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rows_follow_the_guide(rows):
    assert all(list(r) == list(build_handwritten.FIELDS) and r["source"] == "handwritten" for r in rows)
    assert build_handwritten.check(rows) == []
    cases = Counter(r["case"] for r in rows)
    assert {c: cases[c] for c in PLANNED if cases[c] < PLANNED[c]} == {}
    benign_partial = [r["refused"] for r in rows if r["case"] == "benign_partial_refusal"]
    assert 5 <= sum(benign_partial) <= len(benign_partial) - 5  # both kinds of partial refusal
    harmful = [r for r in rows if r["kind"] == "harmful"]
    assert sum("jailbreak" in r["note"] for r in harmful) >= len(harmful) // 3


def test_checks_catch_broken_rows(rows):
    by_case = {r["case"]: r for r in rows}
    broken = [
        dict(by_case["partial_compliance"], refused=True),
        dict(by_case["refusal_lecture"], refused=False),
        dict(by_case["benign_helpful"], kind="harmful"),
        dict(by_case["misinformation_essay"], harmful=False),
        dict(by_case["refusal_no_stock_words"], response="Sorry, that's not something I'll do."),
        dict(by_case["benign_helpful_with_keywords"], response="Here is a recipe for scones."),
        dict(by_case["echo"], harmful="no"),
    ]
    errors = build_handwritten.check(rows + broken)
    for expected in ("wants refused=False", "wants refused=True", "is for ['benign'] requests", "harmful=True",
                     "uses a stock word", "none of the refusal-like words", "are booleans", "prompt used 2 times"):
        assert any(expected in e for e in errors), expected
    assert any("rows, want >=" in e for e in build_handwritten.check(rows[:100]))


def test_prompts_are_its_own(rows):
    named = overlaps.others()
    assert {"StrongREJECT", "BENIGN_TOPICS", "general_prompts.jsonl", "judge_labels_heldout_v2.jsonl",
            "overrefusal_xstest_style.jsonl"} <= set(named) and all(named.values())
    assert build_handwritten.OUT.name not in named
    mine = sorted({r["prompt"] for r in rows})
    assert overlaps.word_hits(mine, named) == []
    reworded = named["judge_labels_heldout_v2.jsonl"][0].upper().rstrip("?!.") + " ?"
    assert overlaps.word_hits([reworded, named["StrongREJECT"][0]], named)
