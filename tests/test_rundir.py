"""The run directory: layout, manifests, and when a stage counts as current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from a3cli.rundir import RunDir, RunDirError, StageManifest, default_run_id, stage_spec_hash
from a3cli.spec import Spec
from tests.test_generate_support import prompt_spec


@pytest.fixture
def spec() -> Spec:
    return prompt_spec()


def _edit(spec: Spec, **sections: dict) -> Spec:
    data = spec.model_dump(mode="json")
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return Spec.model_validate(data)


def test_layout_and_default_run_id(tmp_path: Path, spec: Spec) -> None:
    run = RunDir.open(spec, runs_root=tmp_path)
    assert run.root == tmp_path / spec.attack.key / default_run_id(spec)
    assert RunDir.open(spec, runs_root=tmp_path).root == run.root  # same spec, same run dir
    assert json.loads((run.root / "spec.json").read_text()) == spec.model_dump(mode="json")
    assert RunDir.open(spec, runs_root=tmp_path, run_id="mine").root.name == "mine"
    # the gate's thresholds only re-gate the same run; its capability tolerance (training's choice reads it) does not
    assert default_run_id(_edit(spec, gate={"max_asr": 0.01, "max_fpr": 0.5, "max_unscored": 0.2, "strict": True})) == default_run_id(spec)
    assert default_run_id(_edit(spec, gate={"max_capability_drop": 0.05})) != default_run_id(spec)
    assert default_run_id(_edit(spec, generation={"rounds": 5})) != default_run_id(spec)
    with pytest.raises(RunDirError):
        RunDir.open(spec, runs_root=tmp_path, run_id="../escape")


def test_stage_lifecycle_and_is_current(tmp_path: Path, spec: Spec) -> None:
    run = RunDir.open(spec, runs_root=tmp_path)
    src = tmp_path / "input.jsonl"
    src.write_text('{"prompt": "a"}\n')
    assert not run.is_current("demo")
    with run.stage("demo", inputs=[src], code_version="7") as st:
        assert run.manifest("demo").status == "running"  # type: ignore[union-attr]
        st.write_jsonl("rows.jsonl", [{"a": 1}])
        st.write_json("info.json", {"b": 2})
        st.counts["rows"] = 1
    m = run.manifest("demo")
    assert isinstance(m, StageManifest) and m.status == "complete"
    assert set(m.outputs) == {"demo/rows.jsonl", "demo/info.json"}
    assert m.inputs == {str(src.resolve()): m.inputs[str(src.resolve())]} and m.counts == {"rows": 1}
    assert m.wall_time_s >= 0 and m.tool_versions["a3"]
    assert run.is_current("demo", inputs=[src], code_version="7")
    assert not run.is_current("demo", code_version="8")  # new algorithm
    assert not run.is_current("demo", inputs=[])  # a different set of inputs
    src.write_text('{"prompt": "b"}\n')
    assert not run.is_current("demo")  # input content changed
    src.write_text('{"prompt": "a"}\n')
    assert run.is_current("demo")
    (run.root / "demo" / "rows.jsonl").write_text("tampered\n")
    assert not run.is_current("demo")  # an output changed on disk


def test_failed_stage_is_recorded_and_not_current(tmp_path: Path, spec: Spec) -> None:
    run = RunDir.open(spec, runs_root=tmp_path)
    with pytest.raises(RuntimeError, match="kaputt"), run.stage("demo") as st:
        st.write_jsonl("rows.jsonl", [{"a": 1}])
        raise RuntimeError("kaputt")
    m = run.manifest("demo")
    # the report shows this to people: a sentence, not a Python class name (the traceback goes to a crash log)
    assert m is not None and m.status == "failed" and m.error == "an internal error (kaputt)"
    assert not run.is_current("demo")


def test_missing_inputs_are_reported(tmp_path: Path, spec: Spec) -> None:
    run = RunDir.open(spec, runs_root=tmp_path)
    with pytest.raises(RunDirError, match="run the earlier stage first"), run.stage("split", inputs=[run.path("generate", "probes.jsonl")]):
        pass


def test_only_the_stage_sections_of_the_spec_matter(tmp_path: Path, spec: Spec) -> None:
    gate_edit = _edit(spec, gate={"max_asr": 0.5})
    split_edit = _edit(spec, split={"seed": 3})
    gen_edit = _edit(spec, generation={"rounds": 5})
    assert stage_spec_hash(gate_edit, "generate") == stage_spec_hash(spec, "generate")
    assert stage_spec_hash(split_edit, "generate") == stage_spec_hash(spec, "generate")
    assert stage_spec_hash(split_edit, "split") != stage_spec_hash(spec, "split")
    assert stage_spec_hash(gen_edit, "generate") != stage_spec_hash(spec, "generate")
    assert stage_spec_hash(gate_edit, "unregistered") != stage_spec_hash(spec, "unregistered")  # whole spec
    # the attack's description is part of the prompt that asks an LLM for the OOD hypotheses
    described = _edit(spec, attack={"description": "Something else entirely."})
    assert stage_spec_hash(described, "split") != stage_spec_hash(spec, "split")

    root = tmp_path / "run"
    run = RunDir(root, spec)
    with run.stage("generate") as st:
        st.write_text("x.txt", "x")
    assert RunDir(root, gate_edit).is_current("generate")
    assert not RunDir(root, gen_edit).is_current("generate")


def test_unreadable_manifest_is_an_error(tmp_path: Path, spec: Spec) -> None:
    run = RunDir.open(spec, runs_root=tmp_path)
    run.manifest_path("demo").parent.mkdir(parents=True)
    run.manifest_path("demo").write_text("{not json")
    with pytest.raises(RunDirError, match="unreadable manifest"):
        run.manifest("demo")


def test_engine_usage_is_charged_to_the_stage(tmp_path: Path, spec: Spec) -> None:
    from a3cli.llm import Engine, make_request, scripted_model

    engine = Engine(tmp_path / "c.sqlite")
    ref = scripted_model(lambda r: "one two three")
    engine.generate_sync([make_request(ref, "before the stage")])
    run = RunDir.open(spec, runs_root=tmp_path)
    with run.stage("demo") as st:
        st.track_engine(engine)
        engine.generate_sync([make_request(ref, "a", role="judge"), make_request(ref, "b", role="judge")])
    m = run.manifest("demo")
    assert m is not None and set(m.usage) == {"judge"}
    assert m.usage["judge"].calls == 2 and m.usage["judge"].output_tokens == 6 and m.cost_usd == 0.0


def test_manifest_records_the_hardware_and_the_precision(tmp_path: Path, spec: Spec) -> None:
    from a3cli.rundir import machine
    from a3cli.spec import ModelRef

    run = RunDir.open(spec, runs_root=tmp_path)
    with run.stage("generate") as st:
        st.add_model("target", ModelRef(provider="local", model="some/folder", dtype="bfloat16"))
        st.add_model("judge", ModelRef(provider="openai", model="gpt-x"))
    m = run.manifest("generate")
    assert m is not None and m.hardware == machine()
    assert m.precision == {"target": "bfloat16"}  # a served model's precision is the server's, not recorded
    # The matrix unit read from the CPU's own flags: AMX decides bf16 speed, so a figure must say whether it had it.
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert (m.hardware.matrix == "amx") == (" amx_tile" in flags)
    assert (m.hardware.matrix == "amx") != ("no AMX" in m.hardware.describe())
