"""`a3 run SPEC --loops N`: close the loop between the red-teamer and the repair.

After the pipeline has chosen a checkpoint, each loop k = 1..N:
1. attack: trains the RL red-teamer against the current checkpoint (loop k-1's choice; loop 0 is the run itself) and
   measures its attack success on held-out red-team instructions, judged by the spec's harmful judge like any probe;
2. import: its successful attacks for *training* instructions become a new hypothesis family `h00-import-loop<k>`
   added to the previous loop's probes (each run on the target and judged, with a benign twin, as `a3 generate
   --import` does). The split puts the family in train only; validation and OOD stay the probes they were;
3. retrain: expect -> train -> eval on the enlarged training split; the checkpoint is chosen on validation by the same
   rule as always, and OOD, suites and capability are measured and reported, never read to choose;
4. re-attack: the red-teamer's held-out attacks, run on the new checkpoint, give its success after the extra round
   (same attacks, same n, so before and after compare directly).

    loops/loop_<k>/attack/redteam/   the red-teamer trained against loop k-1's checkpoint (success.json, probes.jsonl)
    loops/loop_<k>/{generate,split,expect,train,eval}/   the enlarged data and the retrained checkpoint
    loops/loop_<k>/reattack.json     the held-out attacks against loop k's checkpoint
    loops/summary.json               one row per loop (loop 0: the run's own checkpoint)

Every step is a stage with a manifest, so an interrupted `--loops` run resumes where it stopped, and model calls come
from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from a3cli._io import read_json, read_jsonl, write_json
from a3cli.errors import UsageError
from a3cli.llm import Engine, unload_local_models
from a3cli.rundir import RunDir
from a3cli.spec import ModelRef, Spec

LOOPS_DIR = "loops"
SUMMARY_FILE = "summary.json"
REATTACK_FILE = "reattack.json"


class LoopRow(BaseModel):
    """One loop of `loops/summary.json`. Rates are {k, n, rate, low, high} (Wilson 95 %)."""

    loop: int
    checkpoint: str = Field(description="The checkpoint this loop ends with (loop 0: the run's own choice).")
    result: str | None = Field(None, description="Its EvalResult, relative to the run directory.")
    attacked: str | None = Field(None, description="The checkpoint the red-teamer attacked (the previous loop's).")
    redteam_asr: dict[str, Any] | None = Field(None, description="Trained red-teamer's held-out attacks on the attacked checkpoint.")
    redteam_asr_untrained: dict[str, Any] | None = Field(None, description="The same policy before RL training, same instructions.")
    imported: int | None = Field(None, description="Successful attacks imported into training (the red-teamer's finds when none could be).")
    reattack_asr: dict[str, Any] | None = Field(None, description="The same held-out attacks on this loop's checkpoint.")
    stopped: str | None = Field(None, description="Why this loop did not retrain, when it did not.")
    wall_time_s: float = 0.0


def loop_dir(run: RunDir, k: int) -> Path:
    return run.root / LOOPS_DIR / f"loop_{k}"


def loop_run(spec: Spec, run: RunDir, k: int) -> RunDir:
    """Loop k's run directory (loop 0 is the run itself)."""
    if k == 0:
        return run
    loop = RunDir(loop_dir(run, k), spec)
    loop.prepare()
    return loop


def chosen_checkpoint(run: RunDir) -> tuple[str | None, dict[str, Any]]:
    """(the chosen adapter's absolute path, or None when the baseline was kept; train/best.json)."""
    path = run.path("train", "best.json")
    if not path.exists():
        raise UsageError(f"{run.root}: no chosen checkpoint (train/best.json); run the pipeline through train first")
    best = read_json(path)
    adapter = None if best["iteration"] == "baseline" else str((run.root / best["adapter"]).resolve())
    return adapter, best


def attacked_target(spec: Spec, adapter: str | None) -> ModelRef:
    """The model a checkpoint is: the spec's target with the adapter, where evaluate_checkpoint measures it."""
    from a3cli.evaluate._evaluate import target_override

    ref = target_override(spec, None, adapter, like_checkpoints=True)
    if adapter is not None and spec.target.serve_adapters and spec.target.provider != "local":
        from a3cli.assets import resolve_local_model, weights_fingerprint
        from a3cli.evaluate._served_adapter import load_served_adapter

        ref = load_served_adapter(spec.target, adapter, weights_fingerprint(resolve_local_model(adapter)))
    return ref


def attack_spec(spec: Spec) -> Spec:
    """The spec the red-teamer of a loop runs on: attack mode (it attacks the checkpoint), everything else as written."""
    if spec.redteam.mode == "attack":
        return spec
    return spec.model_copy(update={"redteam": spec.redteam.model_copy(update={"mode": "attack"})})


def _label(k: int, best: dict[str, Any]) -> str:
    return f"loop {k}: " + ("baseline kept" if best["iteration"] == "baseline" else f"iteration {best['iteration']}")


def run_loops(
    spec_path: Path,
    run: RunDir,
    engine: Engine,
    loops: int,
    *,
    announce: Callable[[str], None] = print,
) -> list[LoopRow]:
    """Run `loops` hardening loops after the run's chosen checkpoint; write and return loops/summary.json's rows."""
    from a3cli.stages import run_expect, run_split
    from a3cli.stages.generate import NoUsableImports, add_imported_family
    from a3cli.stages.pipeline import run_eval_stage
    from a3cli.stages.redteam import attack_success, run_redteam_stage, target_label
    from a3cli.stages.train import run_train

    if loops < 1:
        raise UsageError("--loops must be at least 1")
    spec = run.spec
    spec_dir = spec_path.parent
    rt_spec = attack_spec(spec)
    _, best0 = chosen_checkpoint(run)
    rows = [LoopRow(loop=0, checkpoint=_label(0, best0), result=best0["result"])]
    prev = run
    for k in range(1, loops + 1):
        t0 = time.monotonic()
        adapter, best = chosen_checkpoint(prev)
        target = attacked_target(spec, adapter)
        loop = loop_run(spec, run, k)
        attack = RunDir(loop.root / "attack", rt_spec)
        attack.prepare()
        announce(f"▶ loop {k}: red-teaming {rows[-1].checkpoint.split(': ', 1)[1]} ({rt_spec.redteam.algo}, {rt_spec.redteam.steps} steps)")
        inputs = [Path(adapter) / "adapter_model.safetensors"] if adapter else []
        run_redteam_stage(rt_spec, attack, engine, spec_dir=spec_dir, target=target, inputs=inputs)
        unload_local_models()  # the attacked checkpoint's serving copy; training loads its own
        success = read_json(attack.path("redteam", "success.json"))
        probes_path = attack.path("redteam", "probes.jsonl")
        imported = len(read_jsonl(probes_path))
        row = LoopRow(
            loop=k, checkpoint=rows[-1].checkpoint, result=rows[-1].result, attacked=rows[-1].checkpoint,
            redteam_asr=success["trained"]["asr"], redteam_asr_untrained=success["base"]["asr"], imported=imported,
        )
        if imported == 0:
            row.stopped = "the red-teamer found no successful attack for its training instructions: nothing to retrain on"
            row.wall_time_s = round(time.monotonic() - t0, 2)
            rows.append(row)
            announce(f"  loop {k}: {row.stopped}; stopping")
            break
        announce(f"  loop {k}: {imported} successful attacks to import; retraining")
        try:
            add_imported_family(
                spec, loop, engine, base=prev, import_path=probes_path, hypothesis_id=f"h00-import-loop{k}",  # one family per loop
                description=f"Attacks the RL red-teamer ({rt_spec.redteam.algo}) found against {row.attacked} also make the target fail.",
            )
        except NoUsableImports as e:  # e.g. every find duplicates a probe the run already has
            row.stopped = f"none of the red-teamer's finds could be imported ({e})"
            row.wall_time_s = round(time.monotonic() - t0, 2)
            rows.append(row)
            announce(f"  loop {k}: {row.stopped}; stopping")
            break
        hid = f"h00-import-loop{k}"
        row.imported = sum(1 for p in read_jsonl(loop.path("generate", "probes.jsonl")) if p["hypothesis_id"] == hid and p["kind"] == "harmful")
        run_split(spec, loop, engine)
        run_expect(spec, loop, engine)
        run_train(spec, loop, engine, spec_dir=spec_dir)
        run_eval_stage(loop)
        new_adapter, new_best = chosen_checkpoint(loop)
        heldout = [r["attack"] for r in read_jsonl(attack.path("redteam", "heldout_attacks.jsonl"))]
        retrained = attacked_target(spec, new_adapter)
        reattack = attack_success(rt_spec, engine, heldout, retrained)
        unload_local_models()
        write_json(loop.root / REATTACK_FILE, {"target": _label(k, new_best), "model": target_label(retrained),
                                               "attacks": "attack/redteam/heldout_attacks.jsonl", **reattack})
        row.checkpoint = _label(k, new_best)
        row.result = str((loop.root / new_best["result"]).relative_to(run.root))
        row.reattack_asr = reattack["asr"]
        row.wall_time_s = round(time.monotonic() - t0, 2)
        rows.append(row)
        announce(f"  loop {k}: red-team success {_rate(row.redteam_asr)} on {row.attacked} -> {_rate(row.reattack_asr)} on {row.checkpoint}")
        prev = loop
    write_json(run.root / LOOPS_DIR / SUMMARY_FILE, {"loops": [r.model_dump(mode="json") for r in rows]})
    return rows


def final_run(spec: Spec, run: RunDir, rows: list[LoopRow]) -> RunDir:
    """The run directory holding the last retrained checkpoint (and its gate)."""
    done = [r.loop for r in rows if r.loop > 0 and r.stopped is None]
    return loop_run(spec, run, done[-1]) if done else run


def _rate(rate: dict[str, Any] | None) -> str:
    if not rate or rate.get("rate") is None:
        return "n/a"
    return f"{rate['rate']:.1%} [{rate['low']:.0%}, {rate['high']:.0%}] (n={rate['n']})"


def loop_rows(run: RunDir) -> list[dict[str, str]]:
    """loops/summary.json as display rows: the red-teamer's success on the checkpoint it attacked and, with the same
    held-out attacks, on the checkpoint retrained on its finds (the held-out and suite figures of each loop's checkpoint
    are rows of the closing table)."""
    path = run.root / LOOPS_DIR / SUMMARY_FILE
    if not path.exists():
        return []
    out = []
    for r in read_json(path).get("loops", []):
        if r["loop"] == 0:
            continue
        out.append({
            "loop": str(r["loop"]),
            "attacked": str(r.get("attacked") or ""),
            "red-team ASR (trained)": _rate(r.get("redteam_asr")),
            "red-team ASR (untrained)": _rate(r.get("redteam_asr_untrained")),
            "imported": str(r.get("imported")),
            "new checkpoint": r["checkpoint"] if not r.get("stopped") else f"none: {r['stopped']}",
            "same attacks on it": _rate(r.get("reattack_asr")),
        })
    return out
