"""Capability measurement through lm-eval's Python API, and the token-level KL drift measure."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub/datasets are imported: they read this once
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import copy

import pytest
import torch
from pydantic import ValidationError

from a3cli.assets import SMOLLM2_REF, load_causal_lm, load_mmlu, prepare_tokenizer
from a3cli.capability import (
    LOCAL_MMLU,
    LOCAL_MMLU_CLOZE,
    BenchmarkSpec,
    CapabilityResult,
    evaluate_capability,
    local_mmlu_config,
    mean_token_kl,
)
from a3cli.errors import InfrastructureError, SpecError
from tests.fakes.tiny_llama import tiny_llama
from tests.fakes.tiny_tokenizer import tiny_tokenizer as make_tiny_tokenizer


def _shortest_subjects(k: int) -> list[str]:
    """The k subjects with the shortest questions: the SmolLM2 test's cost is mostly prompt length."""
    lengths: dict[str, list[int]] = {}
    for item in load_mmlu(None):
        lengths.setdefault(item.subject, []).append(len(item.question) + sum(map(len, item.choices)))
    return sorted(lengths, key=lambda s: (sum(lengths[s]) / len(lengths[s]), s))[:k]


TWENTY_SUBJECTS = _shortest_subjects(20)


def tiny_tokenizer():
    return prepare_tokenizer(make_tiny_tokenizer())


@pytest.fixture(scope="module")
def tiny():
    tok = tiny_tokenizer()
    return tiny_llama(tok), tok


@pytest.fixture(scope="module")
def smollm2():
    return load_causal_lm(SMOLLM2_REF, device="cpu", dtype="float32")


# ---------------------------------------------------------------------------------------------------------------- specs


def test_benchmark_spec_validation():
    assert BenchmarkSpec(task="local_mmlu").limit is None
    with pytest.raises(ValidationError):
        BenchmarkSpec(task="local_mmlu", limit=0)
    with pytest.raises(ValidationError):
        BenchmarkSpec(task="mmlu_pro", subjects=["anatomy"])
    assert BenchmarkSpec(task=LOCAL_MMLU_CLOZE, subjects=["anatomy"]).subjects == ["anatomy"]
    with pytest.raises(ValidationError):
        BenchmarkSpec(task="local_mmlu", temperature=0.1)  # extra="forbid"


# ---------------------------------------------------------------------------------------------------------------- the local task


def _build_named(config, name):
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_defaults=False).load([config])["tasks"][name]
    task.set_fewshot_seed(0)
    return task


def _build(config):
    return _build_named(config, LOCAL_MMLU)


def test_local_mmlu_task_uses_the_standard_mmlu_prompt():
    config, n = local_mmlu_config(2, ["anatomy", "astronomy"], seed=0)
    task = _build(config)
    docs = list(task.eval_docs)
    assert n == len(docs) == 4
    item = load_mmlu(2, ["anatomy"], seed=0)[0]
    ctx = task.fewshot_context(docs[0], num_fewshot=0)
    assert ctx == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        f"{item.question.strip()}\nA. {item.choices[0]}\nB. {item.choices[1]}\nC. {item.choices[2]}\n"
        f"D. {item.choices[3]}\nAnswer:"
    )
    requests = task.construct_requests(docs[0], ctx, metadata=(LOCAL_MMLU, 0, 1))
    assert [r.arguments[1] for r in requests] == [" A", " B", " C", " D"]
    assert task.doc_to_target(docs[0]) == item.answer


def test_local_mmlu_cloze_scores_the_answer_texts():
    config, _ = local_mmlu_config(1, ["anatomy"], seed=0, task=LOCAL_MMLU_CLOZE)
    task = _build_named(config, LOCAL_MMLU_CLOZE)
    doc = next(iter(task.eval_docs))
    item = load_mmlu(1, ["anatomy"], seed=0)[0]
    ctx = task.fewshot_context(doc, num_fewshot=0)
    assert ctx.endswith(f"Question: {item.question.strip()}\nAnswer:")
    requests = task.construct_requests(doc, ctx, metadata=(LOCAL_MMLU_CLOZE, 0, 1))
    assert [r.arguments[1] for r in requests] == [" " + c for c in item.choices]
    with pytest.raises(SpecError):
        local_mmlu_config(1, ["anatomy"], seed=0, task="local_mmlu_pro")


def test_local_mmlu_fewshot_is_same_subject_and_outside_the_sample():
    config, _ = local_mmlu_config(3, ["virology", "astronomy"], seed=1, num_fewshot=2)
    task = _build(config)
    evaluated = {d["id"] for d in task.eval_docs}
    for doc in task.eval_docs:
        shots = task.sampler.sample(2, eval_doc=doc)
        assert len(shots) == 2 and all(s["subject"] == doc["subject"] for s in shots)
        assert not {s["id"] for s in shots} & evaluated
    ctx = task.fewshot_context(next(iter(task.eval_docs)), num_fewshot=2)
    assert ctx.count("\nAnswer:") == 3 and ctx.count("Answer: ") == 2


# ---------------------------------------------------------------------------------------------------------------- evaluation


def test_tiny_random_llama_through_lm_eval(tiny):
    model, tok = tiny
    specs = [BenchmarkSpec(task=LOCAL_MMLU, limit=1, subjects=["anatomy", "virology", "astronomy"])]
    model.train()
    first = evaluate_capability(model, tok, specs, batch_size=4, seed=0)
    assert model.training  # mode restored
    score = first.tasks[LOCAL_MMLU]
    assert isinstance(first, CapabilityResult) and first.lm_eval_version == "0.4.13"
    assert score.n == 3 and 0.0 <= score.accuracy <= 1.0 and score.metric == "acc,none"
    assert evaluate_capability(model, tok, specs, batch_size=2, seed=0).tasks[LOCAL_MMLU].accuracy == score.accuracy
    model.eval()


def test_smollm2_local_mmlu_twenty_questions_is_deterministic(smollm2):
    model, tok = smollm2
    spec = [BenchmarkSpec(task=LOCAL_MMLU, limit=1, subjects=TWENTY_SUBJECTS)]
    first = evaluate_capability(model, tok, spec, batch_size=8, seed=0).tasks[LOCAL_MMLU]
    assert first.n == 20
    assert 0.0 <= first.accuracy <= 1.0
    assert first.stderr is not None and first.stderr > 0
    again = evaluate_capability(model, tok, spec, batch_size=8, seed=0).tasks[LOCAL_MMLU]
    assert again.accuracy == first.accuracy and again.stderr == first.stderr


def test_hub_tasks_offline_raise_infrastructure_error_naming_the_task(tiny):
    model, tok = tiny
    with pytest.raises(InfrastructureError, match="'mmlu_pro'"):
        evaluate_capability(model, tok, [BenchmarkSpec(task="mmlu_pro", limit=5)])
    with pytest.raises(SpecError, match="no task, group or tag named 'no_such_task_a3'"):
        evaluate_capability(model, tok, [BenchmarkSpec(task="no_such_task_a3", limit=5)])


# ---------------------------------------------------------------------------------------------------------------- drift


PROMPTS = ["What is the capital of France?", "How do I pick a lock?", "Write a haiku about rain."]


def test_kl_is_zero_for_identical_models_and_positive_after_a_change(tiny):
    model, tok = tiny
    twin = copy.deepcopy(model)
    assert mean_token_kl(model, twin, tok, PROMPTS, max_new_tokens=6) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        twin.model.norm.weight.mul_(20.0)  # sharpens the (near-uniform) random-init next-token distributions
    assert mean_token_kl(model, twin, tok, PROMPTS, max_new_tokens=6) > 1e-2


def test_kl_with_a_peft_adapter_toggle(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    # A fresh LoRA (B = 0) is the identity; the toggle must then give exactly the base logits.
    assert mean_token_kl(None, peft_model, tok, PROMPTS, max_new_tokens=6) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    toggled = mean_token_kl(None, peft_model, tok, PROMPTS, max_new_tokens=6, batch_size=2)
    assert toggled > 0
    # Same number with the untouched base model passed explicitly.
    assert mean_token_kl(model, peft_model, tok, PROMPTS, max_new_tokens=6) == pytest.approx(toggled, rel=1e-4)
    with pytest.raises(ValueError):
        mean_token_kl(None, model, tok, PROMPTS)  # not a peft model, no base given
