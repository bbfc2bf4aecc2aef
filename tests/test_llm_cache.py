"""The content-addressed cache: what is in the key, what is stored, multi-process safety, modes, and `a3 cache`."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from a3cli.llm import Cache, CallError, Engine, Response, Usage, cache_key, default_cache_path, make_request
from a3cli.spec import ModelRef
from tests.fakes import FakeOpenAIServer, fake_openai  # noqa: F401  (fixture)

KEY_ENV = "A3_TEST_CACHE_KEY"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-cachetest-0123456789abcdef")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")


def _ok(text: str = "hi") -> Response:
    return Response(text=text, finish_reason="stop", usage=Usage(input_tokens=3, output_tokens=1), latency_s=0.5)


# ---------------------------------------------------------------------------------------------------- the key


def test_key_ignores_what_does_not_change_the_output() -> None:
    # An explicit max_tokens: a role's own default limit (target 256, judge 1024, ...) is a different request.
    base = ModelRef(provider="openai", model="m", base_url="http://h/v1", api_key_env="A", generate={"max_tokens": 256})
    ident = {"base_url": "http://h/v1"}
    k0, payload = cache_key(make_request(base, "hello"), ident)
    same = [
        base.model_copy(update={"timeout_s": 5.0}),
        base.model_copy(update={"concurrency": 99}),
        base.model_copy(update={"api_key_env": "OTHER_VAR"}),
        base.model_copy(update={"batch_size": 64}),
        base.model_copy(update={"max_retries": 0}),
    ]
    for ref in same:
        assert cache_key(make_request(ref, "hello"), ident)[0] == k0
    assert cache_key(make_request(base, "hello", role="judge"), ident)[0] == k0
    assert "api_key" not in payload and '"A"' not in payload
    # The key hashes the canonical JSON (sorted keys at every level) of everything that decides the reply.
    parsed = json.loads(payload)
    assert payload == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert parsed["target"] == {"identity": ident, "model": "m", "provider": "openai"}
    assert parsed["call"]["messages"] == [["user", "hello"]] and parsed["call"]["sample_index"] == 0


def test_key_changes_with_everything_that_changes_the_output() -> None:
    base = ModelRef(provider="openai", model="m", base_url="http://h/v1")
    ident = {"base_url": "http://h/v1"}
    k0 = cache_key(make_request(base, "hello"), ident)[0]
    variants = [
        cache_key(make_request(base.model_copy(update={"model": "m2"}), "hello"), ident),
        cache_key(make_request(base, "hello"), {"base_url": "http://other/v1"}),
        cache_key(make_request(base, "hello!"), ident),
        cache_key(make_request(base, [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]), ident),
        cache_key(make_request(base, "hello", prefill="Sure"), ident),
        cache_key(make_request(base, "hello", temperature=0.7), ident),
        cache_key(make_request(base, "hello", top_p=0.9), ident),
        cache_key(make_request(base, "hello", max_tokens=10), ident),
        cache_key(make_request(base, "hello", stop=["\n"]), ident),
        cache_key(make_request(base, "hello", seed=1), ident),
        cache_key(make_request(base, "hello", sample_index=1), ident),
        cache_key(make_request(ModelRef(provider="anthropic", model="m", base_url="http://h/v1"), "hello"), ident),
        cache_key(make_request(base, "hello"), {**ident, "adapter": "fingerprint-2"}),
    ]
    keys = [k for k, _ in variants]
    assert k0 not in keys and len(set(keys)) == len(keys)


# ---------------------------------------------------------------------------------------------------- storage


def test_hit_returns_exactly_the_stored_response(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.sqlite")
    stored = _ok("exact text ✓")
    cache.put("k", "{}", stored, provider="openai", model="m")
    hit = cache.get("k")
    assert hit is not None and hit.cached is True
    assert hit.model_dump(exclude={"cached"}) == stored.model_dump(exclude={"cached"})
    assert cache.get("missing") is None
    assert os.stat(cache.path).st_mode & 0o077 == 0  # owner-only: prompts and replies can be sensitive


def test_failures_are_refused(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c.sqlite")
    for bad in (
        Response(error=CallError(kind="timeout", message="t")),
        Response(text="partial", finish_reason="content_filter", error=CallError(kind="content_filter", message="f")),
        Response(text=None),
    ):
        with pytest.raises(ValueError):
            cache.put("k", "{}", bad, provider="openai", model="m")
    assert len(cache) == 0


def test_wal_mode_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = Cache(tmp_path / "c.sqlite")
    cache.put("k", "{}", _ok(), provider="openai", model="m")
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv("A3_CACHE", str(tmp_path / "env.sqlite"))
    assert default_cache_path() == tmp_path / "env.sqlite"
    monkeypatch.delenv("A3_CACHE")
    monkeypatch.setenv("A3_CACHE_DIR", str(tmp_path / "dir"))
    assert default_cache_path() == tmp_path / "dir" / "llm-cache.sqlite"


def _writer(path: str, start: int, stop: int) -> None:
    cache = Cache(path)
    for i in range(start, stop):  # one transaction per entry: the most contention two writers can make
        cache.put(f"key-{i}", json.dumps({"i": i}), _ok(f"reply {i}"), provider="openai", model="m")
    cache.close()


def test_two_processes_writing_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, 0, 300)), ctx.Process(target=_writer, args=(path, 200, 500))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = Cache(path)
    assert len(cache) == 500
    found = cache.get_many([f"key-{i}" for i in range(500)])
    assert {r.text for r in found.values()} == {f"reply {i}" for i in range(500)}


# ---------------------------------------------------------------------------------------------------- through the engine


def test_engine_hits_and_misses_against_the_server(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    engine = Engine(tmp_path / "c.sqlite")
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, generate={"max_tokens": 256})  # the same limit whatever the role
    first = engine.generate_sync([make_request(ref, "hello")])[0]
    assert first.ok and not first.cached and fake_openai.count == 1

    # Same output-relevant content, different plumbing: all hits, nothing reaches the server.
    os.environ["A3_OTHER_KEY"] = "sk-other-key-0123456789"
    plumbing = [
        ref.model_copy(update={"timeout_s": 7.0}),
        ref.model_copy(update={"concurrency": 3}),
        ref.model_copy(update={"api_key_env": "A3_OTHER_KEY"}),
        ref.model_copy(update={"max_retries": 0}),
    ]
    hits = engine.generate_sync([make_request(r, "hello", role="judge") for r in plumbing])
    assert all(h.cached and h.text == first.text for h in hits)
    assert hits[0].model_dump(exclude={"cached"}) == first.model_dump(exclude={"cached"})
    assert fake_openai.count == 1

    # Anything that changes the output misses.
    misses = engine.generate_sync(
        [
            make_request(ref.model_copy(update={"model": "other-model"}), "hello"),
            make_request(ref, "hello again"),
            make_request(ref, "hello", temperature=0.5),
            make_request(ref, "hello", sample_index=2),
        ]
    )
    assert not any(m.cached for m in misses) and fake_openai.count == 5
    del os.environ["A3_OTHER_KEY"]


def test_modes(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    path = tmp_path / "c.sqlite"
    ref = fake_openai.model_ref(api_key_env=KEY_ENV)
    req = [make_request(ref, "hello")]
    Engine(path, mode="no_cache").generate_sync(req)
    assert fake_openai.count == 1 and len(Cache(path)) == 0  # no_cache: nothing written
    Engine(path).generate_sync(req)
    assert fake_openai.count == 2 and len(Cache(path)) == 1
    fake_openai.reply = lambda body: "fresh"
    refreshed = Engine(path, mode="refresh").generate_sync(req)[0]
    assert fake_openai.count == 3 and refreshed.text == "fresh" and not refreshed.cached  # refresh: not read ...
    again = Engine(path).generate_sync(req)[0]
    assert fake_openai.count == 3 and again.cached and again.text == "fresh"  # ... but written
    Engine(path, mode="no_cache").generate_sync(req)
    assert fake_openai.count == 4  # no_cache: not read either
    with pytest.raises(ValueError):
        Engine(path, mode="sometimes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- a run killed mid-batch

_CHILD = """
import sys
from a3cli.llm import Engine, make_request
from a3cli.spec import ModelRef
base_url, cache = sys.argv[1], sys.argv[2]
ref = ModelRef(provider="openai", model="fake-model", base_url=base_url, concurrency=4, max_retries=0)
responses = Engine(cache).generate_sync([make_request(ref, f"prompt {i}") for i in range(60)])
assert all(r.ok for r in responses), [r.error for r in responses if not r.ok]
print("cached", sum(r.cached for r in responses))
"""


def _cached_prompts(path: Path) -> set[str]:
    if not path.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT request FROM responses").fetchall()
    except sqlite3.OperationalError:
        return set()  # schema not created yet
    return {json.loads(r)["call"]["messages"][-1][1] for (r,) in rows}


def test_killed_run_repeats_no_completed_request(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "A3_NO_PROGRESS": "1"}
    path = tmp_path / "c.sqlite"
    with FakeOpenAIServer(latency_s=0.1) as server:
        cmd = [sys.executable, "-c", _CHILD, server.base_url, str(path)]
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(done_before := _cached_prompts(path)) < 12:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.kill()
        child.wait()
        done_before = _cached_prompts(path)  # what had completed when the run died
        assert 12 <= len(done_before) < 60
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.split() == ["cached", str(len(done_before))]
        counts: dict[str, int] = {}
        for prompt in server.prompts():
            counts[prompt] = counts.get(prompt, 0) + 1
    assert all(counts[p] == 1 for p in done_before)  # nothing completed was asked again
    assert len(counts) == 60
    assert sum(1 for n in counts.values() if n > 1) <= 4  # only the calls in flight at the kill (concurrency 4)


# ---------------------------------------------------------------------------------------------------- maintenance + CLI


def _filled(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path / "c.sqlite")
    cache.put_many([(f"a{i}", json.dumps({"i": i}), _ok(f"a{i}"), "openai", "model-a") for i in range(3)])
    cache.put_many([(f"b{i}", json.dumps({"i": i}), _ok(f"b{i}"), "anthropic", "model-b") for i in range(2)])
    return cache


def test_stats_prune_clear_export(tmp_path: Path) -> None:
    cache = _filled(tmp_path)
    s = cache.stats()
    assert s.entries == 5 and s.by_model == {"openai:model-a": 3, "anthropic:model-b": 2} and s.size_bytes > 0
    assert cache.prune(older_than_days=1) == 0
    assert cache.prune(model="model-b") == 2
    rows = list(cache.iter_entries(page=2))
    assert [r["key"] for r in rows] == ["a0", "a1", "a2"] and rows[0]["response"]["text"] == "a0"
    assert cache.prune(older_than_days=0) == 3
    _filled(tmp_path)
    assert cache.clear() == 5 and len(cache) == 0


def test_cache_cli(tmp_path: Path) -> None:
    from a3cli.cli._cache_cmd import cache_app
    from a3cli.errors import UsageError

    cache = _filled(tmp_path)
    runner = CliRunner()
    opt = ["--cache", str(cache.path)]
    result = runner.invoke(cache_app, ["stats", "--json", *opt])
    assert result.exit_code == 0 and json.loads(result.output)["entries"] == 5
    cache.put_result("k1", "capability_kl", "model-a", {"capability": {}, "kl_drift": None})
    result = runner.invoke(cache_app, ["stats", *opt])
    assert "5 model replies, 1 stored measurements (capability_kl: 1)" in result.output
    out = tmp_path / "out" / "export.jsonl"
    result = runner.invoke(cache_app, ["export", str(out), "--model", "model-a", *opt])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and {line["model"] for line in lines} == {"model-a"}
    result = runner.invoke(cache_app, ["prune", *opt])
    assert isinstance(result.exception, UsageError)
    result = runner.invoke(cache_app, ["prune", "--model", "model-a", *opt])
    assert result.exit_code == 0 and "Deleted 4 entries" in result.output  # 3 replies and the stored measurement
    result = runner.invoke(cache_app, ["clear", *opt], input="n\n")
    assert result.exit_code == 0 and "Nothing deleted" in result.output and len(cache) == 2  # declining is not a failure
    result = runner.invoke(cache_app, ["clear", "--yes", *opt])
    assert result.exit_code == 0 and len(cache) == 0
