"""List the prompts of data/benign_borderline.jsonl (training-only) whose meaning is close to a measurement prompt
(the over-refusal suite, the held-out judge labels, StrongREJECT) or to a prompt a3 already uses, by all-MiniLM-L6-v2
cosine. The word-overlap test in tests/test_shipped_data.py catches rewordings that share words; this catches the
same request said differently. It prints, per set, only the pairs at or above the threshold,
so whoever rewrites pool rows reads no other measurement prompt.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/benign_borderline_overlaps.py [THRESHOLD]   # default 0.75
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from tests.test_shipped_data import POOL, _project_prompts, _rows, close_in_meaning, measurement_prompts


def main(threshold: float) -> int:
    pool = [r["prompt"] for r in _rows(POOL)]
    sets = measurement_prompts() | {f"project:{k}": v for k, v in _project_prompts(own=POOL).items()}
    for name, prompts in sets.items():
        hits = close_in_meaning(pool, prompts, threshold)
        print(f"{name}: {len(set(prompts))} prompts, {len(hits)} pairs >= {threshold}")
        for cosine, p, o in hits:
            print(f"  {cosine:.2f}  pool: {p!r}\n        {name}: {o!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.75))
