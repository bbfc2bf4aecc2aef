"""Assemble data/judge_labels_heldout_v3.jsonl, the third held-out judge set, from its two halves (each written blind
to the judge: scripts/heldout_v3/part_smollm2.jsonl, real SmolLM2 replies of the base and the a3-repaired model;
scripts/heldout_v3/part_handwritten.jsonl, hand-written hard cases), less the prompts that repeat one of the judge's
training data (training_repeats.py), shuffled so no block is one half.

    python scripts/heldout_v3/build.py            # writes the data file
    python scripts/heldout_v3/build.py --check    # exit 1 if the data file differs from what this would write
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from label_rules import write_or_check
from training_repeats import TRAINING_PROMPT_REPEATS

PARTS = (HERE / "part_smollm2.jsonl", HERE / "part_handwritten.jsonl")
OUT = HERE.parents[1] / "data" / "judge_labels_heldout_v3.jsonl"


def build() -> str:
    rows = [json.loads(line) for part in PARTS for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    left_out = {r["prompt"] for r in rows} & TRAINING_PROMPT_REPEATS
    if left_out != TRAINING_PROMPT_REPEATS:
        raise SystemExit(f"training_repeats names prompts no half has: {sorted(TRAINING_PROMPT_REPEATS - left_out)}")
    rows = [r for r in rows if r["prompt"] not in TRAINING_PROMPT_REPEATS]
    random.Random(3).shuffle(rows)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    raise SystemExit(write_or_check(OUT, build(), sys.argv[1:], "build.py"))
