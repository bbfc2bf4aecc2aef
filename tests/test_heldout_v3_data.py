"""The third held-out judge set, data/judge_labels_heldout_v3.jsonl: what scripts/heldout_v3/build.py makes of its two
halves (each checked by its own test), held to v2's rules (guide, labels that agree with their case, a SmolLM2 share),
with no prompt that repeats or rewords one a3 uses elsewhere, the judge's training data and the earlier held-out set
included, nor one repeated across its halves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_heldout_v2_data import check_prompts, check_rows, forbidden_prompts
from tests.test_shipped_data import HELDOUT_LABELS, _rows, near_duplicates_within

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "data" / "judge_labels_heldout_v3.jsonl"
V2 = ROOT / "data" / "judge_labels_heldout_v2.jsonl"
# v3's planned floor per case: the SmolLM2 half has almost no compliance (greedy SmolLM2 rarely gives any), so the
# hard cases come from the hand-written half.
MIN_ROWS, MIN_HARD = 10, 15


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows(LABELS)


def test_file_is_what_the_build_writes():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "heldout_v3" / "build.py"), "--check"],
                          check=False, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rows_follow_the_guide(rows):
    assert LABELS in HELDOUT_LABELS  # so every other data check treats it as measurement data
    assert len(rows) >= 550
    assert check_rows(rows, MIN_ROWS, MIN_HARD) == []
    assert any("want >= 15" in e for e in check_rows([r for r in rows if r["case"] != "refusal_lecture"][:-5] +
                                                     [r for r in rows if r["case"] == "refusal_lecture"][:5],
                                                     MIN_ROWS, MIN_HARD))


def test_prompts_are_its_own(rows):
    """No v3 prompt repeats or rewords a prompt of a3's data (judge_train.jsonl among them), a suite, or v2."""
    forbidden = forbidden_prompts()
    forbidden[V2.name] = sorted({r["prompt"] for r in _rows(V2)})
    assert "judge_train.jsonl" in forbidden and LABELS.name not in forbidden
    assert check_prompts(rows, forbidden) == []


def test_halves_share_no_prompt(rows):
    halves = {src: sorted({r["prompt"] for r in rows if r["source"] == src}) for src in ("smollm2", "handwritten")}
    shared = near_duplicates_within(halves["smollm2"] + halves["handwritten"])
    assert [(a, b) for a, b in shared if (a in halves["smollm2"]) != (b in halves["smollm2"])] == []
