"""Tune the offline default on validation only: re-run `expect` and `train` of a finished run with some spec fields
changed, and print what the choice reads (validation ASR/FPR, capability), never the held-out figures.

    .venv/bin/python scripts/offline_sweep.py RUN_DIR NAME --set training.epochs=2 --set training.lora_layers=8

RUN_DIR is a run made by `a3 run` (at least up to split). The experiment is a new run folder under --out (default
sweeps/) holding links to RUN_DIR's generate and split outputs, the changed spec and fresh expect and train outputs,
so `a3 report` works on it; model calls go through the usual cache. One JSON line per experiment is appended to
<out>/results.jsonl with the validation figures, the training time and the hardware. OOD and suite figures are
measured by `train` like in any run (they sit in the experiment's train/selection.json) but this tool neither prints
nor records them: a default tuned on what it is reported on is not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from a3cli._io import read_json
from a3cli.llm import Engine
from a3cli.rundir import RunDir, machine
from a3cli.spec import Spec
from a3cli.stages import run_expect
from a3cli.stages.train import run_train

SHARED = ("spec.json", "generate", "split")


def with_overrides(spec: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """`a.b.c=value` (YAML value) applied to a copy of the spec's JSON."""
    out = json.loads(json.dumps(spec))
    for item in sets:
        path, _, raw = item.partition("=")
        if not path or not _:
            raise SystemExit(f"--set needs key=value (got {item!r})")
        node = out
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = yaml.safe_load(raw)
    return out


def link_tree(src: Path, dst: Path) -> None:
    """Hard links of every file under src (read-only inputs of the experiment; nothing is copied)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run directory made by `a3 run` (it holds spec.json, generate/ and split/)")
    p.add_argument("name", help="this experiment's name (its folder under --out)")
    p.add_argument("--set", dest="sets", action="append", default=[], help="a spec field to change, e.g. training.epochs=2")
    p.add_argument("--out", type=Path, default=Path("sweeps"))
    a = p.parse_args()

    spec = Spec.model_validate(with_overrides(read_json(a.run / "spec.json"), a.sets))
    root = a.out / a.name
    if root.exists():
        raise SystemExit(f"{root} exists; pick another name")
    for name in ("generate", "split"):
        link_tree(a.run / name, root / name)
    run = RunDir(root, spec)
    run.write_spec()
    start = time.monotonic()
    with Engine() as engine:
        run_expect(spec, run, engine)
        run_train(spec, run, engine)
    selection = read_json(root / "train" / "selection.json")
    rows = [
        {k: c.get(k) for k in ("iteration", "asr_val", "fpr_val", "capability_drop", "qualifies")}
        for c in selection["candidates"]
    ]
    manifest = read_json(root / "train" / "manifest.json")
    result = {
        "name": a.name, "sets": a.sets, "chosen": selection["chosen"], "validation": rows,
        "train_stage_s": manifest.get("wall_time_s"), "wall_s": round(time.monotonic() - start, 1),
        "precision": manifest.get("precision"), "hardware": machine().describe(),
    }
    with open(a.out / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
