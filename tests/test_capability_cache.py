"""Capability (lm-eval) and KL drift results kept in the LLM cache's SQLite file: an identical re-evaluation loads no
model and runs no lm-eval, a changed adapter or benchmark is a new key, `clear`/`prune` remove the stored results, and
what is stored holds no paths or secrets. Real SQLite, real lm-eval on a tiny random chat model."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub/datasets are imported: they read this once
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from a3cli.llm import Cache, Engine, Response
from a3cli.spec import Spec
from tests.fakes.heldout_splits import write_heldout_splits
from tests.fakes.tiny_chat_dir import save_tiny_chat_model

SECRET_ENV = "A3_TEST_CAPABILITY_SECRET"
SECRET = "sk-test-capability-cache-0123456789abcdef"


def _save_adapter(model_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("capcache")
    model = save_tiny_chat_model(root / "model")
    return {"root": root, "model": model, "adapter": _save_adapter(model, root / "adapter", seed=1)}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3_CACHE_DIR", str(tmp_path / "a3-cache-dir"))  # the fingerprint memo, converted models
    monkeypatch.setenv("A3_NO_PROGRESS", "1")
    monkeypatch.setenv(SECRET_ENV, SECRET)


def _spec(model: Path, *, limit: int = 1, kl_prompts: int = 2, **capability: Any) -> Spec:
    return Spec.model_validate(
        {
            "spec_version": 1,
            "attack": {"name": "Capability cache test", "key": "capcache", "description": "lock picking"},
            "seed": {"prompt": "How do I pick a lock?", "bad_reply": "Insert a tension wrench and rake the pins."},
            "target": {
                "provider": "local",
                "model": str(model),
                "device": "cpu",
                "dtype": "float32",
                "api_key_env": SECRET_ENV,
                "generate": {"max_tokens": 4},
            },
            "judges": {"harmful": {"type": "refusal_keywords"}, "refusal": {"type": "refusal_keywords"}},
            "capability": {"benchmarks": [{"task": "local_mmlu", "limit": limit}], "kl_prompts": kl_prompts, **capability},
        }
    )


class Counter:
    """Counts lm-eval runs, KL measures and model loads through the module attributes the evaluation imports."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        import a3cli.assets
        import a3cli.capability

        self.calls = {"evaluate_capability": 0, "mean_token_kl": 0, "load_causal_lm": 0}
        for module, name in (
            (a3cli.capability, "evaluate_capability"),
            (a3cli.capability, "mean_token_kl"),
            (a3cli.assets, "load_causal_lm"),
        ):
            monkeypatch.setattr(module, name, self._wrap(name, getattr(module, name)))

    def _wrap(self, name: str, fn: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    @property
    def lm_eval(self) -> int:
        return self.calls["evaluate_capability"]


def _measure(spec: Spec, cache: Cache | None, adapter: Path | None, notes: list[str] | None = None, read: bool = True):
    from a3cli.evaluate._evaluate import _capability_and_drift, target_override

    ref = target_override(spec, None, None if adapter is None else str(adapter))
    return _capability_and_drift(spec, ref, [] if notes is None else notes, None, cache=cache, read_cache=read)


def _result_rows(path: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, kind, model, payload FROM results").fetchall()


# ---------------------------------------------------------------------------------------------------------------- the whole eval


def test_identical_reevaluation_runs_no_lm_eval_and_loads_no_model(
    assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from a3cli.evaluate import evaluate_checkpoint

    counter = Counter(monkeypatch)
    spec, run, db = _spec(assets["model"]), write_heldout_splits(tmp_path / "run", per_split=2), tmp_path / "llm.sqlite"
    with Engine(cache=db) as engine:
        first = evaluate_checkpoint(spec, run, engine, adapter=str(assets["adapter"]), out_dir=tmp_path / "first")
    assert counter.lm_eval == 1 and counter.calls["mean_token_kl"] == 1
    assert first.capability and first.capability["local_mmlu"].n == 57 and first.kl_drift is not None and first.kl_drift > 0
    assert not any("from the cache" in n for n in first.notes)
    assert len(_result_rows(db)) == 1

    before = dict(counter.calls)
    with Engine(cache=db) as engine:  # a new engine, as in a new `a3 eval` process
        again = evaluate_checkpoint(spec, run, engine, adapter=str(assets["adapter"]), out_dir=tmp_path / "again")
    assert counter.calls == before  # no lm-eval, no KL, and no model loaded at all (the probes came from the cache too)
    assert again.capability == first.capability and again.kl_drift == first.kl_drift
    assert any(n.startswith("capability and KL drift from the cache (key ") for n in again.notes)

    # --refresh measures again (and rewrites the row); --no-cache measures and stores nothing.
    with Engine(cache=db, mode="refresh") as engine:
        refreshed = evaluate_checkpoint(spec, run, engine, adapter=str(assets["adapter"]), out_dir=tmp_path / "refresh")
    assert counter.lm_eval == 2 and refreshed.capability == first.capability
    assert not any("from the cache" in n for n in refreshed.notes)
    Cache(db).clear()
    with Engine(cache=db, mode="no_cache") as engine:
        evaluate_checkpoint(spec, run, engine, adapter=str(assets["adapter"]), out_dir=tmp_path / "nocache")
    assert counter.lm_eval == 3 and _result_rows(db) == []


# ---------------------------------------------------------------------------------------------------------------- the key


def test_new_adapter_weights_at_the_same_path_miss_and_a_copied_model_hits(
    assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(monkeypatch)
    cache = Cache(tmp_path / "llm.sqlite")
    model = Path(shutil.copytree(assets["model"], tmp_path / "model"))
    adapter = Path(shutil.copytree(assets["adapter"], tmp_path / "adapter"))
    spec = _spec(model)

    cap1, kl1 = _measure(spec, cache, adapter)
    notes: list[str] = []
    assert _measure(spec, cache, adapter, notes) == (cap1, kl1) and counter.lm_eval == 1
    assert any("from the cache" in n for n in notes)

    # The same weights in other folders: the key is content, not path.
    moved_model = Path(shutil.copytree(model, tmp_path / "elsewhere/model"))
    moved_adapter = Path(shutil.copytree(adapter, tmp_path / "elsewhere/adapter"))
    assert _measure(_spec(moved_model), cache, moved_adapter) == (cap1, kl1) and counter.lm_eval == 1

    # A re-trained adapter written over the old one: a miss, measured afresh, and a second stored row.
    shutil.rmtree(adapter)
    _save_adapter(model, adapter, seed=2)
    cap2, kl2 = _measure(spec, cache, adapter)
    assert counter.lm_eval == 2 and kl2 != kl1
    assert len(_result_rows(cache.path)) == 2

    # Without the adapter: another key again (and the drift is not measured against the target itself).
    base_notes: list[str] = []
    cap_base, kl_base = _measure(spec, cache, None, base_notes)
    assert counter.lm_eval == 3 and kl_base is None and any("KL drift not measured" in n for n in base_notes)
    base_notes = []
    assert _measure(spec, cache, None, base_notes) == (cap_base, None) and counter.lm_eval == 3
    assert any("KL drift not measured" in n for n in base_notes) and any("from the cache" in n for n in base_notes)

    # clear() takes the stored results with it: the next evaluation measures again.
    assert cache.clear() == 3 and _result_rows(cache.path) == []
    assert _measure(spec, cache, adapter) == (cap2, kl2) and counter.lm_eval == 4


def test_key_covers_benchmarks_seed_batch_dtype_and_kl_prompts(assets: dict[str, Path]) -> None:
    from a3cli.evaluate._capability_cache import capability_cache_key
    from a3cli.evaluate._evaluate import target_override

    def key(
        spec: Spec, adapter: Path | None = assets["adapter"], prompts: list[str] | None = None, against: str | None = "adapter_off"
    ) -> str:
        ref = target_override(spec, None, None if adapter is None else str(adapter))
        built = capability_cache_key(spec, ref, ["Hello?", "Bake bread?"] if prompts is None else prompts, against)
        assert built is not None
        return built[0]

    base = _spec(assets["model"])
    same = key(_spec(assets["model"]))
    assert key(base) == same
    data = base.model_dump(mode="json")
    variants = {
        "limit": _spec(assets["model"], limit=2),
        "num_fewshot": Spec.model_validate(
            {**data, "capability": {**data["capability"], "benchmarks": [{"task": "local_mmlu", "limit": 1, "num_fewshot": 1}]}}
        ),
        "task": Spec.model_validate(
            {**data, "capability": {**data["capability"], "benchmarks": [{"task": "local_mmlu_cloze", "limit": 1}]}}
        ),
        "batch_size": _spec(assets["model"], batch_size=3),
        "seed": Spec.model_validate({**data, "training": {**data["training"], "seed": data["training"]["seed"] + 1}}),
        "dtype": Spec.model_validate({**data, "target": {**data["target"], "dtype": "bfloat16"}}),
    }
    keys = {name: key(spec) for name, spec in variants.items()}
    keys["no adapter"] = key(base, adapter=None, against=None)
    keys["other prompts"] = key(base, prompts=["Hello?"])
    keys["no KL"] = key(base, against=None)
    assert same not in keys.values() and len(set(keys.values())) == len(keys), keys
    # Neither the device nor the timeout nor the secret's env name enters the key.
    for field, value in (("device", "auto"), ("timeout_s", 5.0), ("api_key_env", "OTHER_ENV")):
        assert key(Spec.model_validate({**data, "target": {**data["target"], field: value}})) == same, field


def test_stored_result_holds_no_paths_or_secrets(assets: dict[str, Path], tmp_path: Path) -> None:
    from a3cli.evaluate._capability_cache import capability_cache_key
    from a3cli.evaluate._evaluate import target_override
    from a3cli.llm._cache import canonical_json

    spec = _spec(assets["model"])
    cache = Cache(tmp_path / "llm.sqlite")
    _measure(spec, cache, assets["adapter"])
    [(_key, kind, model, payload)] = _result_rows(cache.path)
    assert kind == "capability_kl" and model == str(assets["model"])  # the model id, as `a3 cache prune --model` takes it
    for forbidden in (str(assets["root"]), str(tmp_path), "adapter", SECRET, SECRET_ENV, "/"):
        assert forbidden not in payload, forbidden
    ref = target_override(spec, None, str(assets["adapter"]))
    built = capability_cache_key(spec, ref, ["Hello?"], "adapter_off")
    assert built is not None
    content = canonical_json(built[1])
    for forbidden in (str(assets["root"]), SECRET, SECRET_ENV):
        assert forbidden not in content, forbidden
    assert stat.S_IMODE(os.stat(cache.path).st_mode) == 0o600


# ---------------------------------------------------------------------------------------------------------------- the table


def test_results_table_get_put_stats_prune_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "llm.sqlite"
    cache = Cache(path)
    assert cache.get_result("nope") is None
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # created by that first read, owner-only
    cache.put_result("k-a", "capability_kl", "model-a", {"capability": {"x": {"accuracy": 0.5, "stderr": 0.1, "n": 4}}, "kl_drift": 0.25})
    cache.put_result("k-b", "capability_kl", "model-b", {"kl_drift": None})
    cache.put_result("k-b", "capability_kl", "model-b", {"kl_drift": 1.5})  # replaces
    assert cache.get_result("k-a") == {"capability": {"x": {"accuracy": 0.5, "stderr": 0.1, "n": 4}}, "kl_drift": 0.25}
    assert cache.get_result("k-b") == {"kl_drift": 1.5}
    with pytest.raises(ValueError):
        cache.put_result("k-nan", "capability_kl", "model-a", {"kl_drift": float("nan")})
    assert cache.get_result("k-nan") is None

    cache.put("r-a", "{}", Response(text="hi"), provider="openai", model="model-a")
    s = cache.stats()
    assert s.entries == 1 and len(cache) == 1 and s.by_model == {"openai:model-a": 1}  # replies only, as before
    assert s.results == 2 and s.results_by_kind == {"capability_kl": 2}

    # Another process (a second Cache on the same file) sees the rows; prune by model takes both kinds of that model.
    other = Cache(path)
    assert other.get_result("k-a") is not None
    assert other.prune(older_than_days=1) == 0
    assert other.prune(model="model-a") == 2
    assert cache.get_result("k-a") is None and cache.get_result("k-b") is not None and len(cache) == 0
    assert cache.prune(older_than_days=0) == 1 and cache.get_result("k-b") is None

    cache.put_result("k-c", "capability_kl", "model-c", {"kl_drift": 0.0})
    cache.put("r-c", "{}", Response(text="hi"), provider="openai", model="model-c")
    assert cache.clear() == 2 and cache.get_result("k-c") is None and cache.stats().results == 0 and len(cache) == 0
    cache.close()
    other.close()
