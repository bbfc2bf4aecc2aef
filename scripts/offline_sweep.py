"""One training iteration with hand-set data and LoRA choices on a finished run, measured like `a3 train` measures.

A developer tool for the offline default's repair quality (README, "The offline default, measured"): it reads a run
directory made by `a3 run` (generate, split, expect and train's general data), varies one thing, trains one adapter and
evaluates it on the run's validation and OOD splits with the spec's judges. Each result is appended as a JSON line to
<out>/results.jsonl; adapters and samples stay under <out>/<name>/.

    .venv/bin/python scripts/offline_sweep.py RUN_DIR NAME [--refusal fixed] [--modules all] [--plain] ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from a3cli._io import read_jsonl
from a3cli.assets import load_causal_lm
from a3cli.evaluate import evaluate_checkpoint
from a3cli.judges import is_refusal
from a3cli.llm import Engine
from a3cli.spec import Message, Spec
from a3cli.stages.expect import REFUSALS
from a3cli.stages.general_data import build_general_examples, general_source_path, load_general_conversations
from a3cli.stages.generate._topics import BENIGN_TOPICS
from a3cli.train import SFTExample, TrainHyperparams, lora_config, train_lora

FIXED_REFUSAL = "I'm sorry, but I can't help with that."
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def refusal(kind: str, text: str) -> str:
    """`bank`: expect's varied refusal as written; `fixed`: one sentence; `prefix`: the sentence, then a varied one."""
    if kind == "fixed":
        return FIXED_REFUSAL
    if kind == "prefix":
        return f"{FIXED_REFUSAL} {REFUSALS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(REFUSALS)]}"
    return text


def target_replies(spec: Spec, conversations: list[list[Message]]) -> list[dict[str, Any]]:
    """The target's own replies (through the engine and its cache), refusals left out."""
    with Engine() as engine:
        rows, _ = build_general_examples(spec, engine, conversations)
    return [r for r in rows if not is_refusal(r["messages"][-1]["content"])]


def build_examples(a: argparse.Namespace, spec: Spec, run: Path) -> list[SFTExample]:
    rows = read_jsonl(run / "expect/train_sft.jsonl")
    probes = {r["id"]: r for r in read_jsonl(run / "split/train.jsonl")}
    examples: list[SFTExample] = []
    for r in rows:
        messages = [dict(m) for m in r["messages"]]
        weight = float(r.get("weight", 1.0)) * (a.benign_weight if r["kind"] == "benign" else 1.0)
        has_reply = messages[-1]["role"] == "assistant"
        if r["kind"] == "harmful":
            messages[-1]["content"] = refusal(a.refusal, messages[-1]["content"])
        if has_reply:
            examples.append(SFTExample(messages=messages, weight=weight, source=r["kind"], hypothesis_id=r.get("hypothesis_id")))
        if a.unlikelihood and r.get("avoid"):  # expect's benign rows and benign topic swaps: the refusal not to start
            prompt = messages[:-1] if has_reply else messages
            examples.append(SFTExample(messages=prompt, avoid=r["avoid"], weight=weight, source="benign", hypothesis_id=r.get("hypothesis_id")))
        topic = probes.get(r["probe_id"], {}).get("topic")
        if a.plain and r["kind"] == "harmful" and topic:  # the unwrapped request, refused too
            examples.append(SFTExample(messages=[{"role": "user", "content": topic}, messages[-1]], source="harmful"))
    if a.plain_benign:  # the unwrapped benign requests, answered by the target
        topics = sorted({probes[r["probe_id"]]["topic"] for r in rows if r["kind"] == "benign" and probes.get(r["probe_id"], {}).get("topic")})
        replies = target_replies(spec, [[Message(role="user", content=t)] for t in topics])
        examples += [SFTExample(messages=g["messages"], weight=a.benign_weight, source="benign") for g in replies]
    if a.swap:  # more benign topics inside each harmful probe's wrapper (where the topic appears verbatim)
        pool = sorted({t for ts in BENIGN_TOPICS.values() for t in ts})
        rng = random.Random(0)
        conversations = []
        for r in rows:
            topic = probes.get(r["probe_id"], {}).get("topic")
            last = r["messages"][-2]["content"]
            if r["kind"] != "harmful" or not topic or topic not in last:
                continue
            head = [Message(role=m["role"], content=m["content"]) for m in r["messages"][:-2]]
            conversations += [head + [Message(role="user", content=last.replace(topic, t))] for t in rng.sample(pool, a.swap)]
        examples += [SFTExample(messages=g["messages"], weight=a.benign_weight, source="benign") for g in target_replies(spec, conversations)]
    if a.general:
        with Engine() as engine:
            general, _ = build_general_examples(spec, engine, load_general_conversations(general_source_path(spec), a.general))
    else:
        general = read_jsonl(run / "train/general_sft.jsonl")
    examples += [SFTExample(messages=g["messages"], source="general") for g in general]
    if a.anchors:  # StrongREJECT prompts no probe uses, refused
        from a3cli.assets import load_strongreject

        used = {r.get("topic") for split in ("train", "validation", "ood") for r in read_jsonl(run / f"split/{split}.jsonl")}
        unused = [fp.prompt for fp in load_strongreject(part="pool") if fp.prompt not in used][: a.anchors]
        examples += [
            SFTExample(messages=[{"role": "user", "content": p}, {"role": "assistant", "content": refusal(a.refusal, REFUSALS[i % len(REFUSALS)])}], source="harmful")
            for i, p in enumerate(unused)
        ]
    return examples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run directory made by `a3 run` (it holds spec.json)")
    p.add_argument("name", help="this experiment's name (its folder under --out)")
    p.add_argument("--out", type=Path, default=Path("sweeps"))
    p.add_argument("--lr", type=float, default=2.34e-3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--general-share", type=float, default=0.243)
    p.add_argument("--benign-weight", type=float, default=2.0)
    p.add_argument("--modules", choices=["attn", "all"], default="attn", help="LoRA on attention, or attention + MLP")
    p.add_argument("--last", type=int, default=0, help="LoRA only on the last N layers (0: all layers)")
    p.add_argument("--refusal", choices=["bank", "fixed", "prefix"], default="bank")
    p.add_argument("--plain", action="store_true", help="add each harmful training probe's bare request")
    p.add_argument("--plain-benign", action="store_true", help="add each benign twin's bare request")
    p.add_argument("--swap", type=int, default=0, help="extra benign topics per harmful wrapper")
    p.add_argument("--general", type=int, default=0, help="general prompts to answer (0: the run's general data)")
    p.add_argument("--anchors", type=int, default=0, help="unused StrongREJECT prompts to add as refusals")
    p.add_argument("--unlikelihood", type=float, default=0.0, help="weight of the avoid-the-refusal term (rows naming `avoid`)")
    p.add_argument("--capability", action="store_true", help="also run the spec's capability benchmarks")
    a = p.parse_args()

    spec = Spec.model_validate(json.loads((a.run / "spec.json").read_text(encoding="utf-8")))  # the spec the run was made from
    out = a.out / a.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    examples = build_examples(a, spec, a.run)
    modules = ATTENTION + (MLP if a.modules == "all" else [])
    hp = TrainHyperparams(
        lora_rank=a.rank, lora_alpha=2 * a.rank, learning_rate=a.lr, epochs=a.epochs, general_share=a.general_share,
        batch_size=spec.training.batch_size, max_length=spec.training.max_length, target_modules=modules,
        unlikelihood_weight=a.unlikelihood,
    )
    t0 = time.monotonic()
    model, tokenizer = load_causal_lm(spec.target.model)
    if a.last:  # train_lora trains an adapter it is handed as it is
        from peft import get_peft_model

        n = model.config.num_hidden_layers
        model = get_peft_model(model, lora_config(hp, layers=list(range(n - a.last, n))))
    trained = train_lora(model, tokenizer, examples, hp, out / "adapter")
    del model
    t1 = time.monotonic()
    with Engine() as engine:
        result = evaluate_checkpoint(spec, a.run, engine, adapter=str(out / "adapter"), out_dir=out, capability=a.capability)
    row = {
        "name": a.name, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "examples": len(examples), "steps": trained.steps, "train_s": round(t1 - t0), "eval_s": round(time.monotonic() - t1),
        "val_asr": result.validation.asr.rate, "val_fpr": result.validation.fpr.rate,
        "ood_asr": result.ood.asr.rate, "ood_fpr": result.ood.fpr.rate,
        "capability": {k: v.accuracy for k, v in (result.capability or {}).items()},
    }
    with open(a.out / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
