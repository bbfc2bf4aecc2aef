"""List the held-out v2 prompts whose meaning is close to a prompt a3 uses elsewhere (all-MiniLM-L6-v2 cosine >= a
threshold), for a person to read: the word-overlap test in tests/ catches rewordings that share words, not ones that
say the same thing differently. overlap_exclusions.py records what this review left out.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/heldout_v2/semantic_overlaps.py [THRESHOLD]   # default 0.70
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

import build

from a3cli.assets import embed
from tests.test_heldout_v2_data import forbidden_prompts


def main(threshold: float) -> int:
    mine = sorted({r["prompt"] for r in build.smollm2_rows() + build.handwritten_rows()})
    names, others = [], []
    for name, prompts in forbidden_prompts().items():
        for p in dict.fromkeys(prompts):
            names.append(name)
            others.append(p)
    sims = embed(mine) @ embed(others).T
    hits = sorted(((sims[i, j], names[j], p, others[j]) for i, p in enumerate(mine)
                   for j in (sims[i] >= threshold).nonzero()[0]), reverse=True)
    for s, name, p, o in hits:
        print(f"{s:.2f}  {name}\n      v2:    {p!r}\n      other: {o!r}")
    print(f"{len(hits)} pairs at cosine >= {threshold} ({len(mine)} v2 prompts, {len(others)} others)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.70))
