"""The second judge label set, data/judge_labels_heldout_v2.jsonl (held out until it was measured once; now in the
intent judge's training data as rows with `origin: judge_labels_v2`, tests/test_shipped_data.py checks they are its
rows unchanged): checked as tests/test_shipped_data.py checks the first (same helpers: format, guide rules, coverage,
no prompt a3 uses elsewhere, not even reworded; its own copy in the training data aside), plus what v2 adds: labels
that agree with their case, larger minimums, a SmolLM2 share, provenance (SmolLM2 rows are real replies; the file is
what the build script writes), and no overlap with data/suites/*.jsonl or the first set."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from label_rules import RULES, case_errors

from tests.test_shipped_data import CASES, TRAIN, V2_ORIGIN, _project_prompts, _rows, check_labels, collisions

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "judge_labels_heldout_v2.jsonl"
BUILD = ROOT / "scripts" / "heldout_v2" / "build.py"
RAW = ROOT / "scripts" / "heldout_v2" / "smollm2_raw.jsonl"

assert set(RULES) == CASES  # one list of the guide's cases
HARD_CASES = {
    "refusal_no_stock_words", "refusal_redirect", "refusal_lecture", "partial_compliance", "compliance_after_apology",
    "compliance_with_disclaimer", "misinformation_essay", "benign_helpful_with_keywords", "benign_partial_refusal",
}
MIN_ROWS, MIN_HARD, MIN_TOTAL, MIN_SMOLLM2_SHARE = 20, 25, 500, 0.40


def forbidden_prompts() -> dict[str, list[str]]:
    """Every prompt the set must not reuse: what test_shipped_data forbids the first set (StrongREJECT, a3's benign
    topics, the other data/*.jsonl files, the first held-out set among them, now inside judge_train.jsonl, but for this
    set's own rows there), plus data/suites/*.jsonl."""
    found = _project_prompts(own=LABELS)
    # the training data holds this set's own rows (origin judge_labels_v2): every other training row is still forbidden
    found[TRAIN.name] = [r["prompt"] for r in _rows(TRAIN) if r.get("origin") != V2_ORIGIN]
    for path in sorted((ROOT / "data" / "suites").glob("*.jsonl")):
        found[f"suites/{path.name}"] = [t for r in _rows(path) if (t := r.get("prompt") or r.get("text"))]
    return found


def check_rows(rows: list[dict], min_rows: int = MIN_ROWS, min_hard: int = MIN_HARD) -> list[str]:
    """The first set's checks (check_labels), then v2's stricter ones: each case's labels, more rows per case, a
    SmolLM2 share."""
    errors = check_labels(rows)
    for i, r in enumerate(rows):
        if set(r) != set(rows[0]) or r.get("case") not in RULES or not isinstance(r.get("response"), str):
            continue  # check_labels has reported it
        errors += [f"row {i + 1}: {e}" for e in case_errors(r["case"], r["kind"], r["refused"], r["harmful"], r["response"])]
    cases = Counter(r.get("case") for r in rows)
    for case in RULES:
        want = min_hard if case in HARD_CASES else min_rows
        if cases[case] < want:
            errors.append(f"case {case}: {cases[case]} rows, want >= {want}")
    smollm2 = sum(r.get("source") == "smollm2" for r in rows)
    if len(rows) < MIN_TOTAL or smollm2 < MIN_SMOLLM2_SHARE * len(rows):
        errors.append(f"{len(rows)} rows, {smollm2} from SmolLM2; want >= {MIN_TOTAL}, >= {MIN_SMOLLM2_SHARE:.0%} SmolLM2")
    return errors


def check_prompts(rows: list[dict], forbidden: dict[str, list[str]]) -> list[str]:
    hits = collisions(sorted({r["prompt"] for r in rows}), forbidden)
    return [f"{name}: {p!r} ~ {o!r}" for name, pairs in hits.items() for p, o in pairs]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows(LABELS)


@pytest.fixture(scope="module")
def forbidden() -> dict[str, list[str]]:
    return forbidden_prompts()


def test_rows_follow_the_guide(rows):
    assert check_rows(rows) == []


def test_prompts_are_its_own(rows, forbidden):
    assert {"StrongREJECT", "BENIGN_TOPICS", "general_prompts.jsonl", "judge_train.jsonl",
            "suites/overrefusal_xstest_style.jsonl"} <= set(forbidden)
    assert LABELS.name not in forbidden
    assert all(forbidden.values())  # every source was read
    assert check_prompts(rows, forbidden) == []


def test_smollm2_rows_are_real_replies(rows):
    """Each SmolLM2 row's reply is, character for character, one the model wrote to that prompt."""
    raw = {(r["prompt"], r["response"]) for r in _rows(RAW)}
    assert {(r["prompt"], r["response"]) for r in rows if r["source"] == "smollm2"} <= raw


def test_file_is_what_the_build_script_writes():
    done = subprocess.run([sys.executable, str(BUILD), "--check"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checks_catch_broken_rows(rows, forbidden):
    by_case = {r["case"]: r for r in rows}
    broken = [
        dict(by_case["partial_compliance"], refused=True),
        dict(by_case["refusal_redirect"], refused=False),
        dict(by_case["benign_helpful"], kind="harmful"),
        dict(by_case["misinformation_essay"], case="refusal"),
        dict(by_case["refusal_no_stock_words"], response="Sorry, that's not something I'll do."),
        dict(by_case["benign_helpful_with_keywords"], response="Here is a recipe for scones."),
        dict(by_case["compliance"], harmful="yes"),
        {k: v for k, v in by_case["echo"].items() if k != "note"},
        by_case["degenerate"],
    ]
    errors = check_rows(rows + broken)
    for expected in ("wants refused=False", "wants refused=True", "is for ['benign'] requests", "not one of the guide's",
                     "uses a stock word", "none of the refusal-like words", "are booleans", "missing or extra",
                     "duplicate row"):
        assert any(expected in e for e in errors), expected
    assert any("rows, want >= 25" in e for e in check_rows(rows[:200]))
    assert any("not roughly balanced" in e for e in check_rows([r for r in rows if r["kind"] == "harmful"]))
    assert any("from SmolLM2" in e for e in check_rows([r for r in rows if r["source"] == "handwritten"] * 2))

    general = forbidden["general_prompts.jsonl"][0]
    reused = {
        "StrongREJECT": forbidden["StrongREJECT"][0],
        "general_prompts.jsonl": general.upper().rstrip("?!.") + " ?",  # reworded
        "BENIGN_TOPICS": forbidden["BENIGN_TOPICS"][0],
        "judge_train.jsonl": forbidden["judge_train.jsonl"][0],
        "suites/overrefusal_xstest_style.jsonl": forbidden["suites/overrefusal_xstest_style.jsonl"][0],
    }
    hits = check_prompts([dict(rows[0], prompt=p) for p in reused.values()], forbidden)
    for source in reused:
        assert any(h.startswith(f"{source}: ") for h in hits), source
