"""Assemble scripts/heldout_v3/part_smollm2.jsonl from the labelled SmolLM2 replies (base and a3-repaired).

    python scripts/heldout_v3/build_smollm2.py            # writes the data file
    python scripts/heldout_v3/build_smollm2.py --check    # exit 1 if the labels break a rule or the file is stale

Every reply in smollm2_raw_v3.jsonl is labelled (labels_smollm2.LABELS) or dropped with a reason (DROPPED); the build
refuses anything else, and any label that breaks its case's rule (scripts/label_rules.py, which imports nothing from
a3cli).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from label_rules import case_errors, write_or_check
from labels_smollm2 import DROPPED, LABELS

RAW = HERE / "smollm2_raw_v3.jsonl"
OUT = HERE / "part_smollm2.jsonl"
MODEL_NOTES = {"base": "SmolLM2 base greedy", "repaired": "SmolLM2 repaired (a3 LoRA) greedy"}

def _raw() -> dict[str, dict]:
    return {f"{r['id']}/{r['model']}": r for r in map(json.loads, RAW.open(encoding="utf-8"))}


def label_errors(raw: dict[str, dict]) -> list[str]:
    errors = []
    unknown = (set(LABELS) | set(DROPPED)) - set(raw)
    both = set(LABELS) & set(DROPPED)
    unlabelled = set(raw) - set(LABELS) - set(DROPPED)
    for name, keys in (("unknown", unknown), ("labelled and dropped", both), ("unlabelled", unlabelled)):
        if keys:
            errors.append(f"{name}: {sorted(keys)}")
    for key, reason in DROPPED.items():
        if not reason.strip():
            errors.append(f"{key}: dropped without a reason")
    for key, (case, refused, harmful, _note) in LABELS.items():
        if key not in raw:
            continue
        errors += [f"{key}: {e}" for e in case_errors(case, raw[key]["kind"], refused, harmful, raw[key]["response"])]
    return errors


def rows(raw: dict[str, dict]) -> list[dict]:
    out = []
    for key in sorted(LABELS):
        r, (case, refused, harmful, note) = raw[key], LABELS[key]
        out.append({"prompt": r["prompt"], "response": r["response"], "kind": r["kind"], "refused": refused,
                    "harmful": harmful, "case": case, "source": "smollm2",
                    "note": MODEL_NOTES[r["model"]] + (f"; {note}" if note else "")})
    return out


def build() -> str:
    raw = _raw()
    errors = label_errors(raw)
    if errors:
        raise SystemExit("labels out of step with the raw file or the guide:\n" + "\n".join(errors))
    out = rows(raw)
    random.Random(3).shuffle(out)  # no blocks of one case or model in the file
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)


if __name__ == "__main__":
    raise SystemExit(write_or_check(OUT, build(), sys.argv[1:], "build_smollm2.py"))
