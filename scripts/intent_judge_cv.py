"""Cross-validated accuracy of the `intent` judge on its own training set (data/judge_train.jsonl), with the shipped
code: 5-fold stratified cross-validation, repeated twice, each fold fitted exactly as a3 fits the judge.

This is how the judge's design was chosen (data/judge_train.md) and what the README reports beside the accuracy on an
independent held-out set. Prints accuracy with its Wilson 95 % interval per decision, per origin (rows written for
training, the hand-written hard-case rounds, and the former held-out label sets v1 and v2, `origin: judge_labels_v1` /
`judge_labels_v2`), per request kind (the refused head on harmful requests is the offline default's `not_refused`
attack-success judge, on benign requests its false-refusal judge), per source and per case. A reply counts as refused /
harmful at p >= 0.5, the judges' default threshold.

    python scripts/intent_judge_cv.py [data/judge_train.jsonl]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from a3cli._paths import builtin_data
from a3cli.judges import render_conversation
from a3cli.judges._check import load_labels
from a3cli.judges._intent import GATE_C, GATE_THRESHOLD, TRAIN_FILE, _fit_head, _fit_linear, read_pairs
from a3cli.stats import Rate

FOLDS, REPEATS = 5, 2


def main(path: Path) -> None:
    rows = load_labels(path)
    meta = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = read_pairs([render_conversation(r.messages) for r in rows], [r.reply for r in rows])
    harmful_kind = np.array([r.kind == "harmful" for r in rows])
    truth = {"refused": np.array([r.truth["refusal"] for r in rows]), "harmful": np.array([r.truth["harmful"] for r in rows])}
    n = len(rows)
    for name, y in truth.items():
        right = np.zeros(n, dtype=int)
        for repeat in range(REPEATS):
            folds = StratifiedKFold(FOLDS, shuffle=True, random_state=repeat).split(np.zeros(n), y * 2 + harmful_kind)
            for train, test in folds:
                mask = np.zeros(n, dtype=bool)
                mask[train] = True
                if name == "harmful":
                    head = _fit_head(pairs, y, mask & harmful_kind, name)
                    gate = _fit_linear(pairs.request[train], harmful_kind[train], GATE_C)
                    p = head.proba(pairs.dense[test], [pairs.masked[i] for i in test]) * (gate.proba(pairs.request[test]) >= GATE_THRESHOLD)
                else:
                    head = _fit_head(pairs, y, mask, name)
                    p = head.proba(pairs.dense[test], [pairs.masked[i] for i in test])
                right[test] += (p >= 0.5) == y[test]
        # the interval is over the n rows (repeats are not independent draws): k = mean correct count over the repeats
        total = Rate.of(round(right.sum() / REPEATS), n)
        print(f"{name}: accuracy {total.render()}  ({FOLDS}-fold cross-validation x {REPEATS}, n={n} rows)")
        for field in ("origin", "kind", "source", "case"):
            groups: dict[str, list[int]] = defaultdict(list)
            for i, m in enumerate(meta):
                groups[str(m.get(field))].append(i)
            for key, idx in sorted(groups.items()):
                print(f"  {field} {key}: {Rate.of(round(right[idx].sum() / REPEATS), len(idx)).render()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else builtin_data(TRAIN_FILE))
