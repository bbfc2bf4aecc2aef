"""Local generation with length-grouped batches: a3's local provider takes the shortest waiting prompts first, so a
batch pads less. This bench generates for the same jailbreak-style probes (every strategy of the offline library,
around StrongREJECT requests and their benign twins, in the order generate writes them) with batches formed in
arrival order and with batches formed by length, greedy, SmolLM2-135M-Instruct, and prints the prompt tokens the
model computed (padding included) and the wall time of each. Rounds alternate, the best of each is compared.

    python bench/length_grouping.py            # 96 probes, batch 16, 48 new tokens
    python bench/length_grouping.py --probes RUN/generate/probes.jsonl

The last line is the speed-up, arrival-order time / length-grouped time (target >= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("A3_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from a3cli.assets import SMOLLM2_REF, load_strongreject
from a3cli.llm._local import _load, _prompt_chars, _render, _run_batch, local_identity
from a3cli.llm._types import Request
from a3cli.rundir import machine
from a3cli.spec import GenerateConfig, Message, ModelRef, ProbeFormat
from a3cli.stages.generate._strategies import STRATEGIES, Context, render_probe
from a3cli.stages.generate._topics import ALL_BENIGN


def library_probes(n: int) -> list[list[Message]]:
    """n conversations: each offline strategy in turn around a StrongREJECT request, then its benign twin."""
    rng = random.Random(0)
    topics = [p.prompt for p in load_strongreject(part="pool")]
    ctx = Context(allow_prefill=False, turns=1, system_prompt=False)
    fmt = ProbeFormat()
    names = sorted(STRATEGIES)
    out: list[list[Message]] = []
    for i in range(n // 2):
        chain, seed = [names[i % len(names)]], rng.getrandbits(63)
        out.append(render_probe(chain, topics[i % len(topics)], seed, fmt, ctx).messages)
        out.append(render_probe(chain, ALL_BENIGN[i % len(ALL_BENIGN)], seed, fmt, ctx).messages)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probes", type=Path, help="a run's generate/probes.jsonl (default: 96 probes from the offline library)")
    p.add_argument("-n", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()

    if a.probes:
        rows = [json.loads(line) for line in a.probes.read_text().splitlines() if line.strip()][: a.n]
        conversations = [[Message(**m) for m in r["messages"]] for r in rows]
    else:
        conversations = library_probes(a.n)
    ref = ModelRef(provider="local", model=SMOLLM2_REF, batch_size=a.batch, generate=GenerateConfig(max_tokens=a.max_tokens))
    loaded = _load(ref, local_identity(ref))
    requests = [Request(model=ref, messages=c, config=ref.generate, role="target") for c in conversations]
    lengths = [len(loaded.tokenizer(_render(loaded.tokenizer, r))["input_ids"]) for r in requests]
    orders = {"arrival": list(range(len(requests))), "by length": sorted(range(len(requests)), key=lambda i: _prompt_chars(requests[i]))}

    def computed(order: list[int]) -> int:
        return sum(max(lengths[i] for i in order[s : s + a.batch]) * len(order[s : s + a.batch]) for s in range(0, len(order), a.batch))

    best = {name: float("inf") for name in orders}
    texts: dict[str, dict[int, str]] = {}
    for _ in range(a.rounds):
        for name, order in orders.items():
            start = time.perf_counter()
            out: dict[int, str] = {}
            for s in range(0, len(order), a.batch):
                chunk = order[s : s + a.batch]
                for i, result in zip(chunk, _run_batch(loaded, [requests[i] for i in chunk])):
                    out[i] = getattr(result, "text", "")
            best[name] = min(best[name], time.perf_counter() - start)
            texts[name] = out
    same = sum(texts["arrival"][i] == texts["by length"][i] for i in range(len(requests)))
    print(f"machine: {machine().describe()}; float32; {len(requests)} probes, batch {a.batch}, {a.max_tokens} new tokens")
    print(f"prompt tokens: {sum(lengths)} real; computed with padding: arrival {computed(orders['arrival'])}, by length {computed(orders['by length'])}")
    for name in orders:
        print(f"{name:10s} {best[name]:7.1f} s")
    print(f"same greedy text for {same}/{len(requests)} probes")
    print(f"length-grouped speed-up: {best['arrival'] / best['by length']:.2f}")


if __name__ == "__main__":
    main()
