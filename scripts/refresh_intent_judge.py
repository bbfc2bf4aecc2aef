"""Fit the `intent` judge on a3's training data and write the shipped model (data/judge_intent_model.npz), keyed by
the data's hash and the judge's code version, so that users load it instead of fitting at first use.

Run after changing data/judge_train.jsonl or the judge's code (bump CODE_VERSION in a3cli/judges/_intent.py then);
tests/test_intent_judge.py fails while the shipped key does not match the shipped data.

    OMP_NUM_THREADS=1 python scripts/refresh_intent_judge.py
"""

from __future__ import annotations

from a3cli._paths import builtin_data
from a3cli.judges._intent import SHIPPED_FILE, TRAIN_FILE, fit_intent_model, save_model, shipped_key


def main() -> None:
    train = builtin_data(TRAIN_FILE)
    out = train.parent / SHIPPED_FILE
    key = shipped_key(train)
    save_model(fit_intent_model(train, key), out)
    print(f"wrote {out} (key {key}, {out.stat().st_size} bytes) from {train}")


if __name__ == "__main__":
    main()
