"""A damaged LLM cache (truncated, overwritten with garbage, a corrupted stretch of pages): one line naming the file and
exit 3, before any model loads; `a3 cache check` says so; `a3 cache clear` and `a3 cache repair` always leave a working
cache (repair keeping every entry still readable)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
import yaml

from a3cli.cli import run_cli
from a3cli.errors import InfrastructureError
from a3cli.llm import Cache, Response, make_request
from a3cli.llm._cache import CacheDamagedError, key_for
from a3cli.llm._cache_repair import check_cache, repair_cache
from a3cli.spec import ModelRef

ROWS = 2000


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of 2000 replies (about 3 MB), written through the real Cache and checkpointed into one file."""
    path = tmp_path_factory.mktemp("cache") / "llm-cache.sqlite"
    ref = ModelRef(provider="openai", model="m", base_url="http://127.0.0.1:9/v1")
    rows = []
    for i in range(ROWS):
        request = make_request(ref, f"question {i}: " + "context " * 60)
        key, payload = key_for(request, '{"m":1}')
        rows.append((key, payload, Response(text=f"answer {i} " + "words " * 50), "openai", "m"))
    with Cache(path) as cache:
        cache.put_many(rows)
        cache._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _damaged(healthy: Path, tmp_path: Path, how: str) -> Path:
    path = tmp_path / "llm-cache.sqlite"
    shutil.copy(healthy, path)
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 3)
    elif how == "garbage":
        path.write_bytes(random.Random(0).randbytes(200_000))
    elif how == "pages":  # 16 pages in the middle overwritten, as a bad disk sector or a stray write would
        with open(path, "r+b") as f:
            f.seek((size // 4096 // 2) * 4096)
            f.write(random.Random(1).randbytes(16 * 4096))
    return path


@pytest.mark.parametrize("how", ["truncated", "garbage", "pages"])
def test_damaged_cache_is_one_line_exit_3_naming_the_file(healthy: Path, tmp_path: Path, how: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _damaged(healthy, tmp_path, how)
    for command in (["cache", "stats"], ["cache", "check"], ["cache", "export", "-"]):
        assert run_cli([*command, "--cache", str(path)]) == 3, command
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err and "damaged" in err and "a3 cache repair" in err, err
        assert "DatabaseError" not in err and "Traceback" not in err
    if how != "pages":  # a lookup that never reads the damaged pages still works, as it should
        with pytest.raises(CacheDamagedError) as e:
            Cache(path).get("0" * 64)
        assert isinstance(e.value, InfrastructureError) and str(path) in str(e.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "pages"])
def test_clear_always_recovers(healthy: Path, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _damaged(healthy, tmp_path, how)
    assert run_cli(["cache", "clear", "--yes", "--cache", str(path)]) == 0
    assert "damaged" in capsys.readouterr().out
    assert check_cache(path).ok
    with Cache(path) as cache:
        assert len(cache) == 0
        cache.put_many([("k" * 64, "{}", Response(text="fresh"), "openai", "m")])
        assert cache.get("k" * 64).text == "fresh"  # type: ignore[union-attr]


@pytest.mark.parametrize("how", ["truncated", "garbage", "pages"])
def test_repair_always_recovers_and_keeps_what_is_readable(healthy: Path, tmp_path: Path, how: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _damaged(healthy, tmp_path, how)
    assert run_cli(["cache", "repair", "--cache", str(path)]) == 0
    out = capsys.readouterr().out
    assert "repaired" in out and "damaged file is now" in out
    assert run_cli(["cache", "check", "--cache", str(path)]) == 0
    health = check_cache(path)
    assert health.ok
    kept = health.replies or 0
    if how == "pages":
        assert ROWS * 0.8 < kept < ROWS  # most of it survives a damaged stretch of pages
    with Cache(path) as cache:
        entries = list(cache.iter_entries())
        assert len(entries) == kept and all(Response.model_validate(e["response"]).text.startswith("answer") for e in entries)
    assert list(tmp_path.glob("llm-cache.sqlite.damaged-*"))  # the damaged file is kept for inspection


def test_repair_leaves_a_healthy_cache_alone(healthy: Path, tmp_path: Path) -> None:
    path = tmp_path / "ok.sqlite"
    shutil.copy(healthy, path)
    before = path.read_bytes()
    report = repair_cache(path)
    assert not report.was_damaged and report.kept_replies == ROWS and path.read_bytes() == before


def test_a_run_stops_on_a_damaged_cache_before_any_model_loads(healthy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cache = _damaged(healthy, tmp_path, "garbage")
    monkeypatch.setenv("A3_CACHE", str(cache))
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    import a3cli.assets
    import a3cli.assets._models as models

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the cache was checked")

    monkeypatch.setattr(models, "load_causal_lm", no_loading)
    monkeypatch.setattr(a3cli.assets, "load_causal_lm", no_loading)
    spec = tmp_path / "spec.yaml"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 512}')
    spec.write_text(yaml.safe_dump({
        "spec_version": 1,
        "attack": {"name": "a", "key": "damaged-cache", "description": "d"},
        "seed": {"prompt": "p", "bad_reply": "b"},
        "target": {"provider": "local", "model": str(tmp_path / "model")},
        "judges": {"harmful": {"type": "refusal_keywords"}, "refusal": {"type": "refusal_keywords"}},
    }))
    for command in ("generate", "run"):
        assert run_cli([command, str(spec), "--runs-dir", str(tmp_path / "runs")]) == 3
        err = capsys.readouterr().err
        assert str(cache) in err and "damaged" in err and "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("manifest.json"))  # no stage started
