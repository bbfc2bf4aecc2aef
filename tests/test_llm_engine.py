"""The engine against fake servers through the real SDKs: retries, Retry-After, timeouts, faults, limits, accounting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from a3cli.llm import Cache, Engine, make_request, scripted_model
from tests.fakes import Fault, FakeAnthropicServer, FakeOpenAIServer, fake_anthropic, fake_openai  # noqa: F401

KEY_ENV = "A3_TEST_ENGINE_KEY"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-enginetest-0123456789abcdef")
    monkeypatch.setenv("A3_NO_PROGRESS", "1")


def _engine(tmp_path: Path, **kw: object) -> Engine:
    return Engine(tmp_path / "c.sqlite", backoff_base_s=0.02, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["openai", "anthropic"])
def server(request: pytest.FixtureRequest) -> FakeOpenAIServer | FakeAnthropicServer:
    return request.getfixturevalue(f"fake_{request.param}")


def test_order_preserved_and_duplicates_made_once(tmp_path: Path, server: FakeOpenAIServer) -> None:
    ref = server.model_ref(api_key_env=KEY_ENV, concurrency=4)
    server.latency_s = 0.02
    prompts = [f"p{i % 7}" for i in range(30)]
    out = _engine(tmp_path).generate_sync([make_request(ref, p) for p in prompts])
    assert [r.text for r in out] == [f"echo: {p}" for p in prompts]
    assert server.count == 7


@pytest.mark.asyncio
async def test_concurrent_batches_share_identical_calls(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.latency_s = 0.2
    ref = fake_openai.model_ref(api_key_env=KEY_ENV)
    engine = _engine(tmp_path)
    a, b = await asyncio.gather(engine.generate([make_request(ref, "same")]), engine.generate([make_request(ref, "same")]))
    assert a[0].text == b[0].text == "echo: same" and fake_openai.count == 1
    await engine.aclose()


def test_concurrency_limit(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.latency_s = 0.05
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, concurrency=3)
    _engine(tmp_path).generate_sync([make_request(ref, f"p{i}") for i in range(15)])
    assert fake_openai.peak_in_flight == 3


def test_retry_after_seconds_is_honoured(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.add_faults(Fault("429", retry_after="1"))
    ref = fake_openai.model_ref(api_key_env=KEY_ENV)
    r = _engine(tmp_path).generate_sync([make_request(ref, "x")])[0]
    first, second = fake_openai.requests
    assert r.ok and 0.95 <= second.at - first.at < 1.5  # the jittered back-off alone would be ~0.02 s


def test_retry_after_ms_is_honoured(tmp_path: Path, fake_anthropic: FakeAnthropicServer) -> None:  # noqa: F811
    fake_anthropic.add_faults(Fault("429", retry_after=None, retry_after_ms="300"))
    ref = fake_anthropic.model_ref(api_key_env=KEY_ENV)
    r = _engine(tmp_path).generate_sync([make_request(ref, "x")])[0]
    first, second = fake_anthropic.requests
    assert r.ok and 0.28 <= second.at - first.at < 0.9


def test_too_long_retry_after_fails_instead_of_stalling(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.add_faults(Fault("429", retry_after="3600"))
    ref = fake_openai.model_ref(api_key_env=KEY_ENV)
    r = _engine(tmp_path, max_retry_after_s=60).generate_sync([make_request(ref, "x")])[0]
    assert r.error is not None and r.error.kind == "rate_limit" and "3600" in r.error.message and fake_openai.count == 1


def test_server_errors_retried_then_success(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.add_faults("500", "503", "529")
    ref = server.model_ref(api_key_env=KEY_ENV, max_retries=3)
    r = _engine(tmp_path).generate_sync([make_request(ref, "x")])[0]
    assert r.ok and r.text == "echo: x" and server.count == 4


@pytest.mark.parametrize("fault, kind", [("drop", "connection"), ("malformed", "bad_response"), ("text_body", "bad_response"), ("no_choices", "bad_response"), ("500", "server")])
def test_persistent_faults_become_call_errors_and_are_not_cached(
    tmp_path: Path, server: FakeOpenAIServer, fault: str, kind: str
) -> None:
    server.fault_fn = lambda i, body: fault
    ref = server.model_ref(api_key_env=KEY_ENV, max_retries=2)
    engine = _engine(tmp_path)
    r = engine.generate_sync([make_request(ref, "x")])[0]
    assert not r.ok and r.text is None and r.error is not None
    assert r.error.kind == kind and r.error.attempts == 3 and server.count == 3
    assert len(Cache(tmp_path / "c.sqlite")) == 0
    engine.generate_sync([make_request(ref, "x")])
    assert server.count == 6  # the failure was not remembered
    assert engine.usage.total.errors == 2


def test_hang_times_out_after_bounded_retries(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.fault_fn = lambda i, body: "hang" if i > 0 else None
    ref = server.model_ref(api_key_env=KEY_ENV, max_retries=1, timeout_s=0.5)
    engine = _engine(tmp_path)
    assert engine.generate_sync([make_request(ref, "warm-up")])[0].ok  # SDK client set up outside the timed calls
    start = time.monotonic()
    r = engine.generate_sync([make_request(ref, "x")])[0]
    assert r.error is not None and r.error.kind == "timeout" and r.error.attempts == 2
    assert time.monotonic() - start < 3 and server.count == 3
    assert len(Cache(tmp_path / "c.sqlite")) == 1  # only the warm-up


@pytest.mark.parametrize("fault, kind, status", [("400", "invalid_request", 400), ("401", "auth", 401)])
def test_client_errors_are_not_retried(tmp_path: Path, server: FakeOpenAIServer, fault: str, kind: str, status: int) -> None:
    server.fault_fn = lambda i, body: fault
    r = _engine(tmp_path).generate_sync([make_request(server.model_ref(api_key_env=KEY_ENV), "x")])[0]
    assert r.error is not None and (r.error.kind, r.error.status, r.error.attempts) == (kind, status, 1) and server.count == 1


def test_content_filter_is_an_error_with_the_partial_text_and_not_cached(tmp_path: Path, server: FakeOpenAIServer) -> None:
    server.add_faults("content_filter")
    engine = _engine(tmp_path)
    r = engine.generate_sync([make_request(server.model_ref(api_key_env=KEY_ENV), "x")])[0]
    assert r.error is not None and r.error.kind == "content_filter" and r.error.attempts == 1 and r.text == ""
    assert not r.ok and len(Cache(tmp_path / "c.sqlite")) == 0


def test_usage_and_cost_per_role(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    priced = fake_openai.model_ref(model="gpt-4o-mini", api_key_env=KEY_ENV)
    unknown = fake_openai.model_ref(model="mystery-model", api_key_env=KEY_ENV)
    engine = _engine(tmp_path, prices={"mystery": (1.0, 2.0)})
    engine.generate_sync([make_request(priced, "one two three", role="target"), make_request(unknown, "four", role="judge")])
    engine.generate_sync([make_request(priced, "one two three", role="target")])  # a cache hit costs nothing
    report = engine.usage
    target, judge = report.by_role["target"], report.by_role["judge"]
    assert (target.calls, target.cached, target.input_tokens, target.output_tokens) == (1, 1, 3, 4)
    assert target.cost_usd == pytest.approx((3 * 0.15 + 4 * 0.60) / 1e6)
    assert judge.cost_usd == pytest.approx((1 * 1.0 + 2 * 2.0) / 1e6)  # the override priced it
    assert report.total.calls == 2 and report.total.cost_usd == pytest.approx(target.cost_usd + judge.cost_usd)
    assert report.unpriced_models == []


def test_sync_wrapper_inside_a_running_loop(tmp_path: Path) -> None:
    ref = scripted_model(lambda request: "ok")

    async def inside() -> str | None:
        return _engine(tmp_path).generate_sync([make_request(ref, "x")])[0].text

    assert asyncio.run(inside()) == "ok"


def test_event_loop_stays_responsive(tmp_path: Path, fake_openai: FakeOpenAIServer) -> None:  # noqa: F811
    fake_openai.latency_s = 0.5
    ref = fake_openai.model_ref(api_key_env=KEY_ENV, concurrency=2)

    async def main() -> tuple[float, float]:
        engine = _engine(tmp_path)
        await engine.generate([make_request(ref, "warm-up")])
        gaps, start = [], time.monotonic()
        last = start
        task = asyncio.ensure_future(engine.generate([make_request(ref, f"p{i}") for i in range(4)]))
        while not task.done():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        await engine.aclose()
        return max(gaps), time.monotonic() - start

    max_gap, total = asyncio.run(main())
    assert total >= 0.9 and max_gap < total / 3  # a blocking call would stall the loop for a whole 0.5 s reply


def test_progress_bar_on_a_terminal_plain_lines_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    engine = _engine(tmp_path)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.delenv("A3_NO_PROGRESS")
    with engine._progress("judging", 3) as bar:
        assert bar is not None and bar._bar is not None  # a rich bar on a terminal
        bar.advance(3)
    assert engine._progress(None, 3).__enter__() is None  # no description, no bar
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    assert engine._progress("judging", 3).__enter__() is None
    monkeypatch.delenv("A3_NO_PROGRESS")
    # Not a terminal (a CI log): plain lines, also while nothing completes, and one at the end.
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    monkeypatch.setenv("A3_PROGRESS_EVERY", "0.1")
    capsys.readouterr()
    with engine._progress("judging", 4) as bar:
        assert bar is not None and bar._bar is None
        time.sleep(0.35)
        bar.advance(1)
        engine.retries += 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("a3 progress: judging")]
    assert len(lines) >= 3, lines
    assert "0/4 (0%)" in lines[0] and "ETA unknown" in lines[0]
    assert lines[-1].startswith("a3 progress: judging 1/4 (25%)") and "ETA" in lines[-1] and "2 retries" in lines[-1]


@pytest.mark.asyncio
async def test_limiter_serves_retries_first() -> None:
    from a3cli.llm._engine import _Limiter

    limiter = _Limiter(1)
    await limiter.acquire(retry=False)
    order: list[str] = []

    async def waiter(name: str, retry: bool) -> None:
        await limiter.acquire(retry)
        order.append(name)
        await asyncio.sleep(0)
        limiter.release()

    tasks = [asyncio.ensure_future(waiter(n, n.startswith("retry"))) for n in ("fresh1", "fresh2", "retry-gone", "retry")]
    await asyncio.sleep(0)
    tasks[2].cancel()  # a cancelled waiter must not swallow the slot
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.gather(*tasks[:2], tasks[3])
    assert order == ["retry", "fresh1", "fresh2"]
    await limiter.acquire(retry=False)  # every slot came back


@pytest.mark.parametrize("fault, kind", [(None, None), ("drop", "connection"), ("malformed", "bad_response"), ("hang", "timeout")])
def test_httpx_transport_when_aiohttp_is_missing(
    tmp_path: Path, server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, fault: str | None, kind: str | None
) -> None:
    from a3cli.llm import _anthropic, _openai

    for module in (_openai, _anthropic):  # what http_client() answers without the aiohttp extra
        monkeypatch.setattr(module, "http_client", lambda sdk, timeout: None)
    if fault:
        server.fault_fn = lambda i, body: fault
    ref = server.model_ref(api_key_env=KEY_ENV, max_retries=0, timeout_s=1.0)
    r = _engine(tmp_path).generate_sync([make_request(ref, "x")])[0]
    assert (r.error.kind if r.error else None) == kind and (r.text == "echo: x" if kind is None else r.text is None)
