"""List the prompts of one half of v3 that repeat, reword (word overlap >= 0.75, as tests/test_shipped_data.py) or say
the same as (all-MiniLM-L6-v2 cosine >= a threshold) a prompt a3 uses elsewhere, for a person to read.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 nice -n 19 python scripts/heldout_v3/overlaps.py handwritten|smollm2 [THRESHOLD]

The halves' writers ran it at 0.745 (hand-written) and 0.70 (SmolLM2 prompts) and rewrote every prompt it listed.

Compared with: StrongREJECT, a3's benign topics, data/*.jsonl (the v2 held-out labels among them), data/suites/*.jsonl.
It imports nothing from a3cli.judges or a3cli.probes (the set is written blind to the judge), so it restates
normalise_text; data/judge_train.jsonl is absent from the helper's worktree on purpose and is checked by whoever merges
(tests/test_shipped_data.py does it once the file is back).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import unicodedata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]

import build_handwritten

NEAR_DUPLICATE = 0.75
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:  # as a3cli.probes.normalise_text
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def _words(text: str) -> frozenset[str]:
    return frozenset(normalise_text(text).split())


def others() -> dict[str, list[str]]:
    from a3cli.assets import load_strongreject

    spec = importlib.util.spec_from_file_location("_topics", ROOT / "a3cli" / "stages" / "generate" / "_topics.py")
    topics = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = topics  # dataclasses look their module up
    spec.loader.exec_module(topics)
    found = {"StrongREJECT": [p.prompt for p in load_strongreject(part="all")], "BENIGN_TOPICS": list(topics.ALL_BENIGN)}
    for path in sorted((ROOT / "data").glob("*.jsonl")) + sorted((ROOT / "data" / "suites").glob("*.jsonl")):
        # Not the whole set (this half is in it), nor the judge's training data: the half was written without it, and
        # tests/test_heldout_v3_data.py checks the whole set against it, less training_repeats.py.
        if path != build_handwritten.OUT and path.name not in ("judge_labels_heldout_v3.jsonl", "judge_train.jsonl"):
            rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
            found[path.name] = [t for r in rows if (t := r.get("prompt") or r.get("text"))]
    return found


def word_hits(mine: list[str], named: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(set name, v3 prompt, its prompt) for every prompt repeated or reworded (word overlap), and
    ("within v3", a, b) for near-duplicates inside the set."""
    hits = []
    for name, prompts in named.items():
        keys = [(o, normalise_text(o), _words(o)) for o in dict.fromkeys(prompts)]
        for p in mine:
            pn, pw = normalise_text(p), _words(p)
            hits += [(name, p, o) for o, on, ow in keys if pn == on or len(pw & ow) / len(pw | ow) >= NEAR_DUPLICATE]
    hits += [("within v3", a, b) for i, a in enumerate(mine) for b in mine[i + 1:]
             if len(_words(a) & _words(b)) / len(_words(a) | _words(b)) >= NEAR_DUPLICATE]
    return hits


def half_prompts(half: str) -> list[str]:
    if half == "handwritten":
        return sorted({r["prompt"] for r in build_handwritten.rows()})
    if half == "smollm2":
        from prompts_smollm2 import all_prompts

        return sorted({p["prompt"] for p in all_prompts()})
    raise SystemExit(f"unknown half {half!r}: handwritten or smollm2")


def main(half: str, threshold: float) -> int:
    mine = half_prompts(half)
    named = others()
    words = word_hits(mine, named)
    for name, p, o in words:
        print(f"words  {name}\n      v3:    {p!r}\n      other: {o!r}")
    from a3cli.assets import embed

    names, texts = [], []
    for name, prompts in named.items():
        for o in dict.fromkeys(prompts):
            names.append(name)
            texts.append(o)
    sims = embed(mine) @ embed(texts).T
    close = sorted(((float(sims[i, j]), names[j], p, texts[j]) for i, p in enumerate(mine)
                    for j in (sims[i] >= threshold).nonzero()[0]), reverse=True)
    for s, name, p, o in close:
        print(f"{s:.2f}  {name}\n      v3:    {p!r}\n      other: {o!r}")
    print(f"{len(words)} word-overlap hits, {len(close)} pairs at cosine >= {threshold} "
          f"({len(mine)} v3 prompts, {len(texts)} others)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.75))
