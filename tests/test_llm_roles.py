"""Roles that answer in JSON never degrade silently: role token limits, cut answers re-asked with a larger limit,
re-asks that say why, outcomes counted per role, the real cause of a connection failure, clients closed, adaptive
concurrency on timeouts, base_url in the manifest. The real openai SDK against fake servers on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from a3cli.llm import Engine, Unusable, ask, make_request, outcome_line, run_sync
from a3cli.rundir import RunDir
from a3cli.spec import Message, ModelRef, lint_spec, parse_spec_text
from tests.fakes import FakeOpenAIServer, fake_openai  # noqa: F401

KEY_ENV = "A3_TEST_ROLES_KEY"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-rolestest-0123456789abcdef")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "c.sqlite", backoff_base_s=0.01)


# ------------------------------------------------------------------------------------------------ token limits


def test_roles_get_their_own_default_token_limit_and_a_spec_value_wins() -> None:
    ref = ModelRef(provider="openai", model="m", base_url="http://127.0.0.1:1/v1")
    limits = {role: make_request(ref, "x", role=role).config.max_tokens for role in ("target", "judge", "expected", "agent", "generator")}
    assert limits == {"target": 256, "judge": 1024, "expected": 1024, "agent": 2048, "generator": 4096}
    explicit = ref.model_copy(update={"generate": ref.generate.model_copy(update={"max_tokens": 300})})
    assert make_request(explicit, "x", role="generator").config.max_tokens == 300


def test_lint_warns_when_a_role_limit_is_below_what_its_answer_needs(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "specs" / "offline-smollm2.yaml").read_text())
    role = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", "api_key_env": KEY_ENV}
    data["roles"] = {"generator": {**role, "generate": {"max_tokens": 256}}, "agent": role}
    data["generation"]["probes_per_hypothesis"] = 8
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    issues = [i for i in lint_spec(path) if "max_tokens" in i.message]
    assert [(i.severity, i.path) for i in issues] == [("warning", "roles.generator.generate.max_tokens")]
    assert "below the 1160 tokens a generator answer needs" in issues[0].message  # 200 + 8 probe pairs x 120
    assert issues[0].line is not None  # located at the field


# ------------------------------------------------------------------------------------------------ ask: cut, wrong, failed


def _json_list(text: str) -> list[int]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise Unusable(f"not JSON ({e.msg})") from None
    if not isinstance(value, dict) or "items" not in value:
        raise Unusable('the JSON has no "items" list', "missing_field")
    if any(not 0 <= x <= 9 for x in value["items"]):
        raise Unusable(f"items {value['items']} must lie in [0, 9]", "out_of_range")
    return value["items"]


def test_a_cut_answer_is_asked_again_with_a_larger_limit_then_unusable(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.reply = lambda body: '{"items": [' + ", ".join(["1"] * 200) + "]}"  # 200 words: cut at any limit below
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, generate={"max_tokens": 40})
    engine = _engine(tmp_path)
    [answer] = run_sync(ask(engine, ref, "agent", [[Message(role="user", content="list")]], _json_list))
    assert [r.body["max_tokens"] for r in fake_openai.requests] == [40, 80, 160]  # the same question, more room each time
    assert all(r.body["messages"] == fake_openai.requests[0].body["messages"] for r in fake_openai.requests)
    assert answer.value is None and answer.reason == "length" and "160-token limit" in (answer.problem or "")
    outcomes = engine.outcomes.snapshot()["agent"]
    assert outcomes.reasks == {"length": 2} and outcomes.unusable == {"length": 1}


def test_a_cut_answer_that_parses_is_still_not_taken(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    # A JSON object followed by more text: its start parses, but finish_reason is length, so it is never used as is.
    fake_openai.reply = lambda body: '{"items": [1, 2]} and then some more words that run past the limit'
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, generate={"max_tokens": 4})
    engine = _engine(tmp_path)

    def lenient(text: str) -> list[int]:
        return _json_list(text.split(" and ")[0])

    [answer] = run_sync(ask(engine, ref, "generator", [[Message(role="user", content="list")]], lenient))
    assert [r.body["max_tokens"] for r in fake_openai.requests] == [4, 8, 16]
    assert answer.value == [1, 2] and answer.attempts == 3  # usable only once it came back whole (16 > 14 words)
    assert engine.outcomes.snapshot()["generator"].reasks == {"length": 2}


def test_reasks_say_what_was_wrong(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    replies = iter(["Sure! Here you go: items are 1 and 2.", '{"values": [1]}', '{"items": [4, 12]}'])
    fake_openai.reply = lambda body: next(replies)
    ref = fake_openai.model_ref(api_key_env=KEY_ENV)
    engine = _engine(tmp_path)
    [answer] = run_sync(ask(engine, ref, "expected", [[Message(role="user", content="list")]], _json_list))
    corrections = [r.body["messages"][-1]["content"] for r in fake_openai.requests[1:]]
    assert "not JSON" in corrections[0]
    assert 'the JSON has no "items" list' in corrections[1]
    assert answer.value is None and answer.reason == "out_of_range" and "[4, 12] must lie in [0, 9]" in (answer.problem or "")
    assert [r.body.get("seed") for r in fake_openai.requests] == [None] * 3
    o = engine.outcomes.snapshot()["expected"]
    assert o.reasks == {"missing_field": 1, "unparseable": 1} and o.unusable == {"out_of_range": 1}
    line = outcome_line(engine.outcomes.snapshot())
    assert line == "roles: expected 2 re-asks (missing_field 1, unparseable 1), 0 fallbacks, 1 unusable (out_of_range 1)"


def test_a_failed_call_is_unusable_at_once(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.fault_fn = lambda i, body: "400"
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, max_retries=0)
    engine = _engine(tmp_path)
    [answer] = run_sync(ask(engine, ref, "agent", [[Message(role="user", content="x")]], _json_list))
    assert fake_openai.count == 1 and answer.reason == "call_failed:invalid_request" and answer.value is None
    assert engine.outcomes.snapshot()["agent"].unusable == {"call_failed:invalid_request": 1}


def test_a_judge_never_reads_a_cut_verdict(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    from a3cli.judges import build_judge
    from a3cli.spec import LLMJudge

    # The verdict comes first, so a cut reply would parse: it must be re-asked with more room, not read.
    fake_openai.reply = lambda body: '{"harmful": true, "reason": "' + "long " * 30 + '"}'
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, generate={"max_tokens": 10})
    defn = LLMJudge.model_validate({"type": "llm", "prompt": {"system": "judge", "user_template": "{prompt} {response}"}, "max_parse_retries": 1})
    engine = _engine(tmp_path)
    [verdict] = build_judge(defn, role="harmful", engine=engine, model=ref).judge([([Message(role="user", content="q")], "a reply")])
    assert [r.body["max_tokens"] for r in fake_openai.requests] == [10, 20]
    assert verdict.label == "unscored" and "cut off" in (verdict.error or "")
    assert engine.outcomes.snapshot()["judge"].model_dump() == {"reasks": {"length": 1}, "fallbacks": {}, "unusable": {"length": 1}}
    fake_openai.reset()
    fake_openai.reply = lambda body: '{"harmful": false, "reason": "declines"}'
    [verdict] = build_judge(defn, role="harmful", engine=_engine(tmp_path / "b"), model=ref).judge([([Message(role="user", content="q")], "a reply")])
    assert verdict.label == "negative" and fake_openai.count == 1


# ------------------------------------------------------------------------------------------------ connection, clients


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_refused_connection_is_reported_as_such(tmp_path: Path) -> None:
    ref = ModelRef(provider="openai", model="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", api_key_env=KEY_ENV, max_retries=0)
    engine = _engine(tmp_path)
    for response in (run_sync(engine.generate([make_request(ref, "hi")]))[0], engine.generate_sync([make_request(ref, "hi")])[0]):
        assert response.error is not None and response.error.kind == "connection"
        assert "no running event loop" not in response.error.message
        assert "ConnectionRefusedError" in response.error.message or "Connect call failed" in response.error.message


def test_no_unclosed_client_session_after_a_stage_style_call(fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:  # noqa: F811
    script = f"""
import gc, os
os.environ["{KEY_ENV}"] = "sk-x"
from a3cli.judges import run_sync
from a3cli.llm import Engine, make_request
from a3cli.spec import ModelRef
engine = Engine(mode="no_cache")
ref = ModelRef(provider="openai", model="m", base_url="{fake_openai.base_url}", api_key_env="{KEY_ENV}")
print(run_sync(engine.generate([make_request(ref, "hi")]))[0].text)
gc.collect()
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDEVMODE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "echo: hi"
    assert "Unclosed client session" not in done.stderr and "Unclosed connector" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------------------------ adaptive concurrency


def test_timeouts_halve_the_requests_in_flight(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    # A slow server that never cancels abandoned generations: every request hangs. Without back-off the 4 retries
    # would arrive together on top of the 4 still-running requests; with it they go one at a time.
    fake_openai.fault_fn = lambda i, body: "hang"
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, concurrency=4, timeout_s=0.4, max_retries=1)
    out = _engine(tmp_path).generate_sync([make_request(ref, f"p{i}") for i in range(4)])
    assert all(r.error is not None and r.error.kind == "timeout" for r in out)
    deadline = time.monotonic() + 5  # on a loaded machine the server thread may log the last arrival a moment late
    while len(fake_openai.requests) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    arrivals = sorted(r.at for r in fake_openai.requests)
    assert len(arrivals) == 8
    first, retries = arrivals[:4], arrivals[4:]
    assert first[-1] - first[0] < 0.2  # the first wave went out together
    gaps = [b - a for a, b in itertools.pairwise(retries)]
    assert min(gaps) >= 0.3, gaps  # each retry waited for the one before it to time out


def test_limiter_recovers_after_successes() -> None:
    from a3cli.llm._engine import _Limiter

    limiter = _Limiter(8)
    limiter.timed_out()
    limiter.timed_out()
    assert limiter.limit == 2
    for _ in range(2):
        limiter.succeeded()
    assert limiter.limit == 3
    for _ in range(3 + 4 + 5 + 6 + 7 + 8):
        limiter.succeeded()
    assert limiter.limit == 8  # back to the configured concurrency, never above


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_records_the_endpoint_without_credentials(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "specs" / "offline-smollm2.yaml").read_text())
    data["target"] = {"provider": "openai", "model": "m", "base_url": "http://user:secret@127.0.0.1:8000/v1?api_key=k", "api_key_env": KEY_ENV}
    spec = parse_spec_text(yaml.safe_dump(data))
    run = RunDir.open(spec, runs_root=tmp_path)
    with run.stage("probe-stage") as st:
        st.add_model("target", spec.target)
    manifest = run.manifest("probe-stage")
    assert manifest is not None and manifest.models["target"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert "secret" not in run.manifest_path("probe-stage").read_text()


# ------------------------------------------------------------------------------------------------ offline generator fit


def test_lint_and_generate_say_when_the_offline_library_cannot_probe_the_attack(tmp_path: Path) -> None:
    from a3cli.stages import run_generate
    from tests.test_generate_support import make_engine, prompt_spec

    spec = prompt_spec(rounds=1, hypotheses_per_round=2, probes_per_hypothesis=1)
    sycophancy_like = spec.model_copy(update={"expected": spec.expected.model_copy(update={"harmful_behavior": "hold_firm"})})
    run = RunDir.open(sycophancy_like, runs_root=tmp_path / "runs")
    manifest = run_generate(sycophancy_like, run, make_engine(tmp_path))
    [note] = [n for n in manifest.notes if n.startswith("warning: ")]
    assert "offline strategy library" in note and "hold_firm" in note and "set roles.generator" in note
    assert not any(n.startswith("warning: ") for n in run_generate(spec, RunDir.open(spec, runs_root=tmp_path / "r2"), make_engine(tmp_path / "e2")).notes)

    data = yaml.safe_load((ROOT / "specs" / "political-neutrality.yaml").read_text())
    data["roles"].pop("generator")
    path = tmp_path / "political.yaml"
    path.write_text(yaml.safe_dump(data))
    [warning] = [i for i in lint_spec(path) if "offline strategy library" in i.message]
    assert warning.severity == "warning" and warning.path == "judges.harmful" and "partisanship" in warning.message


@pytest.mark.parametrize("path", sorted((ROOT / "specs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_that_need_an_llm_say_so(path: Path) -> None:
    from a3cli.spec import LLMJudge, load_spec

    spec = load_spec(path)
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    llms = [r for r in (spec.roles.generator, spec.roles.judge, spec.roles.expected, spec.roles.agent) if r is not None]
    needs_llm = bool(llms) or spec.target.provider != "local" or any(isinstance(j, LLMJudge) for j in (spec.judges.harmful, spec.judges.refusal))
    assert bool(re.search(r"Needs (LLMs|an LLM)", header)) == needs_llm, header
    assert not any("offline strategy library" in i.message for i in lint_spec(path))


# ------------------------------------------------------------------------------------------------ the report


def test_report_shows_each_stage_roles_reasks_fallbacks_and_unusable_answers(tmp_path: Path) -> None:
    from a3cli._io import write_json
    from a3cli.llm import RoleOutcomes
    from a3cli.report import collect, render_html
    from tests.test_report import _manifest, build_run

    build_run(tmp_path / "run")
    generate = _manifest("generate", 42.0, 1200)
    generate["outcomes"] = {
        "generator": RoleOutcomes(reasks={"length": 2}, fallbacks={"offline_strategy_library": 1}, unusable={"length": 1}).model_dump(),
        "judge": RoleOutcomes(unusable={"unparseable": 3}).model_dump(),
    }
    write_json(tmp_path / "run/generate/manifest.json", generate)
    html = render_html(collect(tmp_path / "run"))
    table = html.split("<h3>Role answers</h3>", 1)[1].split("</table>", 1)[0]
    assert "<td>generate</td><td>generator</td><td>2 <small>(length 2)</small></td><td>1 <small>(offline_strategy_library 1)</small></td>" in table
    assert "<td>generate</td><td>judge</td><td>0</td><td>0</td><td>3 <small>(unparseable 3)</small></td>" in table
    build_run(tmp_path / "clean")
    assert "Every role's answers were usable at the first ask" in render_html(collect(tmp_path / "clean"))
