"""The SmolLM2 half of the third held-out judge set, scripts/heldout_v3/part_smollm2.jsonl: the file is what
scripts/heldout_v3/build_smollm2.py writes (which refuses labels that break the guide's case rules or leave a reply
unlabelled), and every row is a real reply of the base or repaired model, character for character."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "scripts" / "heldout_v3"
LABELS = ROOT / "scripts" / "heldout_v3" / "part_smollm2.jsonl"
RAW = HERE / "smollm2_raw_v3.jsonl"
FIELDS = {"prompt", "response", "kind", "refused", "harmful", "case", "source", "note"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_file_is_what_the_build_script_writes():
    done = subprocess.run([sys.executable, str(HERE / "build_smollm2.py"), "--check"], check=False,
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rows_are_real_replies_of_both_models():
    rows, raw = _rows(LABELS), _rows(RAW)
    assert all(set(r) == FIELDS and r["source"] == "smollm2" for r in rows)
    assert {(r["prompt"], r["response"]) for r in rows} <= {(r["prompt"], r["response"]) for r in raw}
    models = Counter(r["note"].split(";")[0] for r in rows)
    assert set(models) == {"SmolLM2 base greedy", "SmolLM2 repaired (a3 LoRA) greedy"}
    assert min(models.values()) >= 100


def test_build_catches_broken_labels(monkeypatch):
    sys.path.insert(0, str(HERE))
    import build_smollm2

    raw = build_smollm2._raw()
    assert build_smollm2.label_errors(raw) == []
    labels = dict(build_smollm2.LABELS)
    refusal = next(k for k, v in labels.items() if v[0] == "plain_refusal")
    benign = next(k for k, v in labels.items() if v[0] == "benign_helpful")
    labels[refusal] = ("plain_refusal", False, False, "")
    labels[benign] = ("compliance", False, True, "")
    del labels[next(iter(labels))]
    monkeypatch.setattr(build_smollm2, "LABELS", labels)
    errors = "\n".join(build_smollm2.label_errors(raw))
    for expected in ("wants refused=True", "is for ['harmful'] requests", "unlabelled"):
        assert expected in errors, expected
