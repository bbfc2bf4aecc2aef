"""`a3 run --loops`: the RL red-teamer attacks the chosen checkpoint, its finds join training as a train-only family,
the model is retrained and attacked again with the same held-out attacks; on a tiny random-weight model (the default
suite) and on SmolLM2 (slow, the README's figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from a3cli.llm import Engine
from a3cli.rundir import RunDir
from a3cli.spec import load_spec
from a3cli.stages.harden import LoopRow, loop_rows, run_loops
from a3cli.stages.pipeline import STAGES, closing_rows, run_pipeline
from tests.fakes.tiny_chat_dir import save_tiny_chat_model
from tests.fakes.tiny_pipeline import tiny_pipeline_spec


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv("A3_CACHE", str(tmp_path / "cache.sqlite"))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _loop_spec(tmp_path: Path, model_dir: Path, **redteam) -> Path:
    path = tiny_pipeline_spec(tmp_path, model_dir)
    data = yaml.safe_load(path.read_text())
    data["training"]["iterations"] = 1
    data["redteam"] = {"mode": "attack", "algo": "grpo", "steps": 2, "batch_size": 4, "group_size": 2, "max_new_tokens": 6,
                       "checkpoint_every": 2, "prompts": {"max_count": 24, "min_words": 4}, **redteam}
    path.write_text(yaml.safe_dump(data))
    return path


def test_one_loop_trains_on_the_red_teamers_finds_and_keeps_held_out_data_held_out(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec_path = _loop_spec(tmp_path, tiny_model_dir)
    data = yaml.safe_load(spec_path.read_text())  # every iteration qualifies, so each choice is a trained adapter
    data["training"]["target_asr"], data["gate"] = 1.0, {"max_capability_drop": 1.0}
    spec_path.write_text(yaml.safe_dump(data))
    spec = load_spec(spec_path)
    run = RunDir.open(spec, runs_root=tmp_path / "runs")
    engine = Engine()
    run_pipeline(spec_path, run, engine, list(STAGES), announce=lambda _: None)
    rows = run_loops(spec_path, run, engine, 1, announce=lambda _: None)

    assert [r.loop for r in rows] == [0, 1] and rows[1].stopped is None
    loop = run.root / "loops" / "loop_1"
    for stage in ("attack/redteam", "generate", "split", "expect", "train", "eval"):
        assert json.loads((loop / stage / "manifest.json").read_text())["status"] == "complete", stage

    # the red-teamer attacked the run's chosen checkpoint
    best = json.loads((run.root / "train/best.json").read_text())
    attacked = json.loads((loop / "attack/redteam/manifest.json").read_text())["models"]["target"]
    assert attacked["adapter"] == (None if best["iteration"] == "baseline" else str((run.root / best["adapter"]).resolve()))

    # held out means held out: validation and OOD are the run's own probes, byte for byte
    for name in ("validation", "ood"):
        assert (loop / f"split/{name}.jsonl").read_bytes() == (run.root / f"split/{name}.jsonl").read_bytes(), name
    imported = [p for p in _jsonl(loop / "generate/probes.jsonl") if p["hypothesis_id"] == "h00-import-loop1"]
    finds = _jsonl(loop / "attack/redteam/probes.jsonl")
    assert finds and len([p for p in imported if p["kind"] == "harmful"]) == len(finds) == rows[1].imported
    assert {p["id"] for p in imported} <= {p["id"] for p in _jsonl(loop / "split/train.jsonl")}
    old = _jsonl(run.root / "generate/probes.jsonl")
    assert _jsonl(loop / "generate/probes.jsonl")[: len(old)] == old  # the earlier probes, unchanged
    results = {r["probe_id"]: r for r in _jsonl(loop / "generate/results.jsonl")}
    assert all(results[p["id"]]["verdict"]["judge"] for p in imported)  # judged like any probe
    expect_ids = {r.get("probe_id") for r in _jsonl(loop / "expect/train_sft.jsonl")}
    assert {p["id"] for p in imported} & expect_ids  # and trained on
    heldout = {a["attack"] for a in _jsonl(loop / "attack/redteam/heldout_attacks.jsonl")}
    assert not heldout & {f["prompt"] for f in finds}

    # before and after the extra round, the same held-out attacks: same n, each rate with its interval
    before, after = rows[1].redteam_asr, rows[1].reattack_asr
    assert before is not None and after is not None and before["n"] == after["n"] == len(heldout) > 0
    for rate in (before, after):
        assert 0.0 <= rate["low"] <= rate["rate"] <= rate["high"] <= 1.0
    reattack = json.loads((loop / "reattack.json").read_text())
    assert reattack["asr"] == after and len(reattack["rows"]) == len(heldout) and reattack["target"] == rows[1].checkpoint
    new_best = json.loads((loop / "train/best.json").read_text())  # re-attacked: the checkpoint retrained on the finds
    assert new_best["iteration"] != "baseline" and best["iteration"] != "baseline"
    assert reattack["model"] == f"{spec.target.model} + adapter {(loop / new_best['adapter']).resolve()}"
    summary = json.loads((run.root / "loops/summary.json").read_text())["loops"]
    assert [LoopRow.model_validate(r) for r in summary] == rows
    assert any(r["model"].startswith("hardened: loop 1") for r in closing_rows(run))
    shown = loop_rows(run)
    assert len(shown) == 1 and shown[0]["same attacks on it"].endswith(f"(n={after['n']})")
    from a3cli.report import collect, render_html

    data = collect(run.root)
    assert [r.source for r in data.loop_rows] == [rows[1].result] and not data.problems
    html = render_html(data)
    assert "Hardening loops" in html and f"({after['k']}/{after['n']})" in html and "Hardening loop 1:" in html

    # a second run of the loops resumes: every step current, no model call
    engine2 = Engine()
    again = run_loops(spec_path, run, engine2, 1, announce=lambda _: None)
    assert again == [r.model_copy(update={"wall_time_s": a.wall_time_s}) for r, a in zip(rows, again)]
    assert engine2.usage.total.calls == 0


def test_loops_need_the_whole_pipeline_and_a_gpu_for_4bit(tmp_path: Path, tiny_model_dir: Path) -> None:
    spec_path = _loop_spec(tmp_path, tiny_model_dir)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def a3_run(spec: Path, *args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "a3cli", "run", str(spec), "--runs-dir", str(tmp_path / "runs"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)

    done = a3_run(spec_path, "--loops", "1", "--until", "train")
    assert done.returncode == 2 and "--loops follows the whole pipeline" in done.stderr + done.stdout
    done = a3_run(_loop_spec(tmp_path, tiny_model_dir, load_in_4bit=True), "--loops", "1")
    import torch

    if not torch.cuda.is_available():  # the pre-flight check stops it before any model loads or any stage runs
        assert done.returncode == 3 and "redteam.load_in_4bit" in done.stderr and "Traceback" not in done.stderr
        assert not list((tmp_path / "runs").rglob("manifest.json"))


# --- SmolLM2: one loop of the offline default, the README's figures ----------------------------------------------------


def offline_loop_spec(tmp_path: Path) -> Path:
    """The offline default (specs/offline-smollm2.yaml) with a small budget: training capped at
    A3_LOOP_TRAIN_STEPS steps (default 40) per training stage, and a PPO red-teamer (SmolLM2 attacking SmolLM2) of
    A3_LOOP_RL_STEPS steps (default 8) whose best 16 finds are imported."""
    data = yaml.safe_load(Path(__file__).resolve().parents[1].joinpath("specs/offline-smollm2.yaml").read_text())
    data["attack"]["key"] = "offline-loop"
    data["training"]["max_steps"] = int(os.environ.get("A3_LOOP_TRAIN_STEPS", "40"))
    data["redteam"] = {
        "mode": "attack", "algo": os.environ.get("A3_LOOP_RL_ALGO", "ppo"), "steps": int(os.environ.get("A3_LOOP_RL_STEPS", "8")),
        "batch_size": 8, "max_new_tokens": 24, "learning_rate": 3e-4, "init_kl_coef": 0.05, "checkpoint_every": 4,
        "import_max": 16, "prompts": {"max_count": 120},
    }
    path = tmp_path / "offline-loop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_offline_default_one_loop_on_smollm2(tmp_path: Path) -> None:
    """SmolLM2 repaired, red-teamed by SmolLM2, retrained on the finds, red-teamed again with the same held-out attacks.
    A3_LOOP_MEASURE_OUT=file.json writes the figures the README reports."""
    import time

    spec_path = offline_loop_spec(tmp_path)
    spec = load_spec(spec_path)
    run = RunDir.open(spec, runs_root=tmp_path / "runs")
    engine = Engine()
    t0 = time.monotonic()
    run_pipeline(spec_path, run, engine, list(STAGES), announce=print)
    t_pipeline = time.monotonic() - t0
    rows = run_loops(spec_path, run, engine, 1, announce=print)
    t_loop = time.monotonic() - t0 - t_pipeline

    assert rows[1].stopped is None, rows[1].stopped
    before, after = rows[1].redteam_asr, rows[1].reattack_asr
    assert before["n"] == after["n"] > 0
    loop = run.root / "loops" / "loop_1"
    for name in ("validation", "ood"):
        assert (loop / f"split/{name}.jsonl").read_bytes() == (run.root / f"split/{name}.jsonl").read_bytes()
    table = {r["model"]: r for r in closing_rows(run)}
    figures = {
        "cpu": _cpu_name(),
        "pipeline_s": round(t_pipeline, 1),
        "loop_s": round(t_loop, 1),
        "loops": [r.model_dump(mode="json") for r in rows],
        "closing_table": table,
        "redteam_eval": json.loads((loop / "attack/redteam/result.json").read_text())["eval"],
    }
    out = os.environ.get("A3_LOOP_MEASURE_OUT")
    if out:
        Path(out).write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps({k: v for k, v in figures.items() if k != "redteam_eval"}, indent=2, default=str))


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"
