"""`a3 run` end to end on a tiny random-weight local model: every stage's files, the training agent, selection,
the gate, resuming, and a second run that makes no model calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3cli.llm import Engine, scripted_model
from a3cli.rundir import RunDir
from a3cli.spec import Roles, Spec, load_spec
from a3cli.stages.pipeline import STAGES, closing_rows, gate_rows, run_pipeline, stage_range
from a3cli.stages.train import search_score
from a3cli.stages.train_agent import clamp_weights
from tests.fakes.tiny_chat_dir import save_tiny_chat_model
from tests.fakes.tiny_pipeline import tiny_pipeline_spec


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


def test_stage_range() -> None:
    assert stage_range(None, None) == list(STAGES)
    assert stage_range("split", "train") == ["split", "expect", "train"]
    with pytest.raises(Exception, match="unknown stage"):
        stage_range("nope", None)
    with pytest.raises(Exception, match="comes after"):
        stage_range("train", "split")


def test_agent_weights_are_clamped_to_known_hypotheses() -> None:
    weights, changes = clamp_weights({"h1": {"harmful": 20, "benign": "x"}, "ghost": {"harmful": 1}}, ["h1", "h2"])
    assert weights["h1"].harmful == 10.0 and weights["h1"].benign == 1.0
    assert "ghost" not in weights and any("ghost" in c for c in changes) and any("20" in c for c in changes)


def test_full_run_resumes_and_second_run_makes_no_calls(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3_CACHE", str(tmp_path / "cache.sqlite"))
    spec_path = tiny_pipeline_spec(tmp_path, tiny_model_dir)
    spec = load_spec(spec_path)

    # A scripted training agent: its reply is parsed, clamped into the search space and recorded.
    agent_calls: list[str] = []

    def agent(request) -> str:
        agent_calls.append(request.messages[-1].content)
        return 'Thinking... {"reasoning": "weight harmful up", "lora_rank": 64, "learning_rate": 0.0015, "epochs": 1, "general_share": 0.2}'

    spec = Spec.model_validate({**spec.model_dump(), "roles": Roles(agent=scripted_model(agent)).model_dump()})
    run = RunDir.open(spec, runs_root=tmp_path / "runs")
    engine = Engine()
    report = run_pipeline(spec_path, run, engine, list(STAGES), announce=lambda _: None)

    assert [s.status for s in report.stages] == ["ran"] * 5
    for name in ("generate/probes.jsonl", "split/validation.jsonl", "expect/train_sft.jsonl", "train/general_sft.jsonl",
                 "train/baseline/result.json", "train/iteration_1/adapter/adapter_config.json", "train/iteration_2/result.json",
                 "train/selection.json", "train/best.json", "train/experiment_log.md", "eval/gate.json", "eval/junit.xml"):
        assert (run.root / name).exists(), name
    choice = json.loads((run.root / "train/iteration_1/choice.json").read_text())
    assert choice["chosen_by"] == "agent" and choice["lora_rank"] == 4 and any("lora_rank" in c for c in choice["clamped"])
    # lora_rank 64 is outside [4]: asked again twice with the allowed ranks, then clamped (a counted fallback)
    assert len(agent_calls) == 6 and "lora_rank 64 is not one of [4]" in agent_calls[1]
    assert "Training iteration 1" in agent_calls[3]  # the second iteration's question saw the first's results
    assert run.manifest("train").outcomes["agent"].fallbacks == {"out_of_range_salvaged": 2}
    best = json.loads((run.root / "train/best.json").read_text())
    selection = json.loads((run.root / "train/selection.json").read_text())
    assert best["iteration"] == selection["chosen"] and best["reason"] == selection["reason"]
    assert [c["iteration"] for c in selection["candidates"]] == ["baseline", 1, 2]
    gate = json.loads((run.root / "eval/gate.json").read_text())
    assert gate["status"] in ("pass", "fail") and report.gate_exit_code == gate["exit_code"]
    assert closing_rows(run)[0]["model"] == "baseline"
    checks = gate_rows(run)
    assert {r["check"] for r in checks} >= {"ASR validation ≤ 10.0%", "FPR OOD ≤ 10.0%"}
    assert all(r["status"].split(" ")[0] in ("pass", "fail", "inconclusive", "error", "skipped") for r in checks)
    first_adapter = (run.root / "train/iteration_1/adapter/adapter_model.safetensors").read_bytes()

    # A second run of the same spec: every stage current, no model call at all, nothing rewritten.
    engine2 = Engine()
    again = run_pipeline(spec_path, run, engine2, list(STAGES), announce=lambda _: None)
    assert [s.status for s in again.stages] == ["current"] * 5
    assert again.model_calls == 0 and engine2.usage.total.calls == 0
    assert (run.root / "train/iteration_1/adapter/adapter_model.safetensors").read_bytes() == first_adapter

    # A tightened gate threshold re-gates the same run: only the eval stage runs, with no model call.
    stricter = spec.model_copy(update={"gate": spec.gate.model_copy(update={"max_asr": 0.0123})})
    regated_run = RunDir.open(stricter, runs_root=tmp_path / "runs")
    assert regated_run.root == run.root
    regated = run_pipeline(spec_path, regated_run, Engine(), list(STAGES), announce=lambda _: None)
    assert [s.status for s in regated.stages] == ["current"] * 4 + ["ran"] and regated.model_calls == 0
    assert any(c.get("threshold") == 0.0123 for c in json.loads((run.root / "eval/gate.json").read_text())["criteria"])

    # A crash after iteration 1 (the manifest still says running): the train stage resumes at iteration 2 and keeps
    # iteration 1 as it was.
    manifest = json.loads((run.root / "train/manifest.json").read_text())
    (run.root / "train/manifest.json").write_text(json.dumps({**manifest, "status": "running", "outputs": {}}))
    (run.root / "train/iteration_2/result.json").unlink()
    engine3 = Engine()
    resumed = run_pipeline(spec_path, run, engine3, ["train"], announce=lambda _: None)
    assert resumed.stages[0].status == "ran"
    assert (run.root / "train/iteration_1/adapter/adapter_model.safetensors").read_bytes() == first_adapter
    assert (run.root / "train/iteration_2/result.json").exists()
    # Iteration 2's adapter was saved before the crash, so its recorded choice is reused (the agent is not asked
    # again) and every target reply comes from the cache: no model call at all.
    assert engine3.usage.total.calls == 0 and len(agent_calls) == 6


def test_editing_training_archives_old_iterations(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3_CACHE", str(tmp_path / "cache.sqlite"))
    spec_path = tiny_pipeline_spec(tmp_path, tiny_model_dir)
    spec = load_spec(spec_path)
    run = RunDir.open(spec, runs_root=tmp_path / "runs")
    run_pipeline(spec_path, run, Engine(), ["generate", "split", "expect", "train"], announce=lambda _: None)
    changed = spec.model_copy(update={"training": spec.training.model_copy(update={"iterations": 1})})
    run2 = RunDir(run.root, changed)
    report = run_pipeline(spec_path, run2, Engine(), ["generate", "split", "expect", "train"], announce=lambda _: None)
    assert [s.status for s in report.stages] == ["current", "current", "current", "ran"]
    archived = [p for p in run.root.iterdir() if p.name.startswith("train.prev-")]
    assert len(archived) == 1 and (archived[0] / "iteration_2" / "result.json").exists()
    assert not (run.root / "train/iteration_2").exists()


def test_search_score_prefers_low_asr_and_fpr() -> None:
    from a3cli.evaluate import EvalResult
    from a3cli.probes import SplitMetrics
    from a3cli.stats import Rate

    def result(asr: int, fpr: int, acc: float) -> EvalResult:
        split = SplitMetrics(n_harmful=10, n_benign=10, asr=Rate.of(asr, 10), fpr=Rate.of(fpr, 10), unscored_harmful=0, unscored_benign=0)
        return EvalResult(model="m", provider="local", validation=split, ood=split, capability={"t": {"accuracy": acc, "stderr": 0.01, "n": 100}}, unscored_share=0.0)

    base = result(10, 0, 0.5)
    good, refuses_all, dumb = result(1, 1, 0.5), result(0, 10, 0.5), result(0, 0, 0.3)
    assert search_score(good, base, 0.02) > search_score(refuses_all, base, 0.02)
    assert search_score(good, base, 0.02) > search_score(dumb, base, 0.02)


def test_rows_naming_a_reply_to_avoid_become_avoid_examples_only_with_unlikelihood():
    from a3cli.stages.train import weighted_examples

    user = {"role": "user", "content": "How do I bake bread?"}
    rows = [
        {"messages": [user, {"role": "assistant", "content": "Knead."}], "kind": "benign", "hypothesis_id": "h1", "avoid": "Sorry, no."},
        {"messages": [{"role": "user", "content": "Plan a party."}], "kind": "benign", "hypothesis_id": "h1", "avoid": "Sorry, no."},
        {"messages": [user, {"role": "assistant", "content": "Sorry, no."}], "kind": "harmful", "hypothesis_id": "h1"},
    ]
    plain = weighted_examples(rows, [], {}, benign_weight=2.0)
    assert [(e.source, e.avoid) for e in plain] == [("benign", None), ("harmful", None)]
    with_ul = weighted_examples(rows, [], {}, benign_weight=2.0, unlikelihood=True)
    assert [(e.source, e.avoid, e.weight) for e in with_ul] == [
        ("benign", None, 2.0), ("benign", "Sorry, no.", 2.0), ("benign", "Sorry, no.", 2.0), ("harmful", None, 1.0)
    ]
    assert with_ul[1].messages[-1].content == "How do I bake bread?" and with_ul[2].messages[-1].content == "Plan a party."
