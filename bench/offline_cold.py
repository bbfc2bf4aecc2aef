"""The offline default, cold: `a3 run specs/offline-smollm2.yaml` in a fresh cache folder and a fresh runs folder (model
conversion, generation, training, evaluation: everything a new user's first run does), one run.

Prints the machine (CPU model, AMX or not, GPU) and the precision each stage used, each stage's wall time from its
manifest, the total, and as the last line the total over the 12-minute budget (target <= 1.0).

    python bench/offline_cold.py                  # the README's spec
    python bench/offline_cold.py --spec SPEC      # another spec
    python bench/offline_cold.py --keep DIR       # keep the run and cache folders in DIR (for a look afterwards)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUDGET_S = 12 * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=str(ROOT / "specs" / "offline-smollm2.yaml"))
    parser.add_argument("--keep", default=None, help="Folder to keep the cache and runs in (default: a temp folder).")
    args = parser.parse_args()

    from a3cli.rundir import machine

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="a3-cold-"))
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "A3_CACHE_DIR": str(base / "cache"), "HF_HUB_OFFLINE": "1", "A3_NO_PROGRESS": "1"}
    env.pop("A3_CACHE", None)
    print(f"machine: {machine().describe()}")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "a3cli", "run", args.spec, "--runs-dir", str(base / "runs")],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )
    total = time.monotonic() - start
    if proc.returncode not in (0, 1):
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        print(f"a3 run failed with exit code {proc.returncode}")
        return 2
    [run] = [p for p in (base / "runs").glob("*/*") if p.is_dir()]
    for stage in ("generate", "split", "expect", "train", "eval"):
        path = run / stage / "manifest.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        precision = ", ".join(f"{k} {v}" for k, v in (m.get("precision") or {}).items()) or "-"
        print(f"{stage:9s} {m['wall_time_s']:8.1f} s   precision: {precision}")
    print(f"total     {total:8.1f} s   (gate exit code {proc.returncode}; run folder {run})")
    print(f"cold run / 12-minute budget: {total / BUDGET_S:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
