"""Held out means held out: changing only the OOD split (or its results) changes no choice — not the checkpoint
selection, not the search score, not the training agent's prompt, not the defences' kept candidates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from a3cli._io import read_jsonl, write_jsonl
from a3cli.evaluate import EvalResult
from a3cli.llm import Engine, scripted_model
from a3cli.probes import SplitMetrics
from a3cli.rundir import RunDir
from a3cli.spec import Roles, Spec, load_spec
from a3cli.stages.pipeline import run_pipeline
from a3cli.stages.train import _log_section, history_entry, iteration_result, search_score
from a3cli.stages.train_agent import TrainingChoice, agent_prompt
from a3cli.stats import Rate
from a3cli.train import TrainHyperparams, select_checkpoint
from tests.fakes.tiny_chat_dir import save_tiny_chat_model
from tests.fakes.tiny_pipeline import tiny_pipeline_spec


def _split(asr: tuple[int, int], fpr: tuple[int, int]) -> SplitMetrics:
    return SplitMetrics(n_harmful=asr[1], n_benign=fpr[1], asr=Rate.of(*asr), fpr=Rate.of(*fpr), unscored_harmful=0, unscored_benign=0)


def _result(val: SplitMetrics, ood: SplitMetrics, acc: float = 0.5) -> EvalResult:
    return EvalResult(
        model="m", provider="local", validation=val, ood=ood, capability={"t": {"accuracy": acc, "stderr": 0.01, "n": 100}},
        unscored_share=0.0,
    )


def test_every_chooser_reads_the_same_thing_whatever_ood_says() -> None:
    val = [_split((3, 60), (2, 60)), _split((9, 60), (0, 60))]
    baseline_val = _split((55, 60), (1, 60))
    spec = Spec.model_validate({
        "spec_version": 1, "attack": {"name": "a", "key": "a", "description": "d"},
        "seed": {"prompt": "p", "bad_reply": "r"}, "target": {"provider": "local", "model": "m"},
        "judges": {"harmful": {"type": "refusal_keywords"}, "refusal": {"type": "refusal_keywords"}},
    })
    choice = TrainingChoice(lora_rank=8, lora_alpha=16, learning_rate=1e-3, epochs=1, general_share=0.2, chosen_by="search")
    hp = TrainHyperparams()

    def everything_chosen(ood_worlds: list[SplitMetrics]) -> str:
        baseline = _result(baseline_val, ood_worlds[0])
        results = [_result(v, o) for v, o in zip(val, ood_worlds[1:])]
        its = [iteration_result(i + 1, r) for i, r in enumerate(results)]
        selection = select_checkpoint(iteration_result(0, baseline), its, asr_target=0.1, capability_tolerance=0.02)
        history = [history_entry(i + 1, choice, hp, r, baseline, spec, {}) for i, r in enumerate(results)]
        log = "".join(_log_section(i + 1, choice, r, {}, {}) for i, r in enumerate(results))
        prompt = agent_prompt(spec, experiment_log=log, history=history, hypotheses=[], iteration=3)
        scores = [search_score(r, baseline, 0.02) for r in results]
        return json.dumps([selection.model_dump(mode="json"), history, log, prompt, scores])

    calm = [_split((60, 60), (0, 60)), _split((0, 60), (0, 60)), _split((0, 60), (0, 60))]
    wild = [_split((1, 7), (7, 9)), _split((60, 60), (60, 60)), _split((13, 80), (2, 31))]
    assert everything_chosen(calm) == everything_chosen(wild)
    # ...and the same function does see a validation change (the comparison above is not vacuous).
    val[0] = _split((30, 60), (2, 60))
    changed = everything_chosen(calm)
    val[0] = _split((3, 60), (2, 60))
    assert changed != everything_chosen(calm)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


def _drop_half_of_ood(run_root: Path) -> None:
    """Keep the first half of the OOD twin pairs: OOD results change (n and counts), nothing else does."""
    path = run_root / "split" / "ood.jsonl"
    rows = read_jsonl(path)
    pairs: list[list[dict]] = []
    for row in rows:
        if pairs and row.get("twin_id") == pairs[-1][0]["id"]:
            pairs[-1].append(row)
        else:
            pairs.append([row])
    assert len(pairs) >= 2, "the tiny run needs at least two OOD pairs"
    write_jsonl(path, [r for pair in pairs[: len(pairs) // 2] for r in pair])


def test_train_and_defences_choose_the_same_when_only_ood_changes(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from a3cli.defend import run_defend

    spec_path = tiny_pipeline_spec(tmp_path, tiny_model_dir)
    prompts: dict[str, list[str]] = {"a": [], "b": []}
    world = {"name": "a"}

    def agent(request) -> str:
        prompts[world["name"]].append(request.messages[-1].content)
        return '{"reasoning": "r", "lora_rank": 4, "learning_rate": 0.0015, "epochs": 1, "general_share": 0.2}'

    spec = load_spec(spec_path)
    data = spec.model_dump()
    data["defenses"]["prompt"]["use_gepa"] = False  # the library search: GEPA would ask the scripted agent for prompts
    data["defenses"]["icl"]["iterations"] = 1  # the default methods with an agent are four; one round each keeps it short
    spec = Spec.model_validate({**data, "roles": Roles(agent=scripted_model(agent)).model_dump()})
    monkeypatch.setenv("A3_CACHE", str(tmp_path / "cache-a.sqlite"))
    run_a = RunDir.open(spec, runs_root=tmp_path / "runs-a")
    run_pipeline(spec_path, run_a, Engine(), ["generate", "split", "expect"], announce=lambda _: None)
    shutil.copytree(tmp_path / "runs-a", tmp_path / "runs-b")
    run_b = RunDir.open(spec, runs_root=tmp_path / "runs-b")
    _drop_half_of_ood(run_b.root)

    for name, run in (("a", run_a), ("b", run_b)):
        world["name"] = name
        monkeypatch.setenv("A3_CACHE", str(tmp_path / f"cache-{name}.sqlite"))  # each world asks its own agent
        run_pipeline(spec_path, run, Engine(), ["train"], announce=lambda _: None)
        run_defend(spec, run, Engine(), ["icl", "prompt"], capability=False)

    def text(run: RunDir, rel: str) -> str:
        return (run.root / rel).read_text()

    sel_a, sel_b = (json.loads(text(r, "train/selection.json")) for r in (run_a, run_b))
    assert sel_a["held_out"] != sel_b["held_out"], "the OOD results must differ for this test to mean anything"
    assert {k: v for k, v in sel_a.items() if k != "held_out"} == {k: v for k, v in sel_b.items() if k != "held_out"}
    # the training agent twice, and (the default in-context methods with an agent) the ICL agent: the same questions
    assert sum("Choose iteration" in p for p in prompts["a"]) == 2 and len(prompts["a"]) > 2 and prompts["a"] == prompts["b"]
    for rel in ("train/iteration_1/choice.json", "train/iteration_2/choice.json", "train/history.jsonl",
                "train/experiment_log.md", "train/best.json"):
        assert text(run_a, rel) == text(run_b, rel), rel
    for method in ("icl", "prompt"):
        res_a, res_b = (json.loads(text(r, f"defend/{method}/result.json")) for r in (run_a, run_b))
        kept_a = [(a.get("method"), a.get("iteration"), a.get("id")) for a in res_a["attempts"] if a.get("kept")]
        kept_b = [(a.get("method"), a.get("iteration"), a.get("id")) for a in res_b["attempts"] if a.get("kept")]
        assert kept_a == kept_b, method
        assert [r["detail"] for r in res_a["rows"]] == [r["detail"] for r in res_b["rows"]], method
