"""Known suites: where each lives on the Hugging Face Hub, which column holds the prompt, which rows to keep, and
whether it measures attack success (`harmful`) or over-refusal (`benign`). Two presets are offline: a3 ships them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Preset:
    kind: Literal["harmful", "benign"]
    about: str
    hub: str | None = None
    config: str | None = None
    split: str | None = None
    prompt_field: str = "prompt"
    where: dict[str, str] = field(default_factory=dict)
    offline: Literal["strongreject_heldout", "overrefusal_a3"] | None = None


PRESETS: dict[str, Preset] = {
    "strongreject": Preset("harmful", "StrongREJECT forbidden prompts (313; gated on the Hub)", hub="walledai/StrongREJECT", split="train"),
    "harmbench": Preset("harmful", "HarmBench standard behaviours (200)", hub="walledai/HarmBench", config="standard", split="train"),
    "xstest": Preset(
        "benign", "XSTest safe prompts that look unsafe (250; gated on the Hub)", hub="walledai/XSTest", split="test",
        where={"label": "safe"},
    ),
    "or_bench_hard": Preset(
        "benign", "OR-Bench-Hard-1K seemingly toxic benign prompts (1,319)", hub="bench-llm/or-bench", config="or-bench-hard-1k",
        split="train",
    ),
    "jailbreakbench": Preset(
        "harmful", "JailbreakBench JBB-Behaviors harmful goals (100)", hub="JailbreakBench/JBB-Behaviors", config="behaviors",
        split="harmful", prompt_field="Goal",
    ),
    "jailbreakbench_benign": Preset(
        "benign", "JailbreakBench JBB-Behaviors benign goals (100)", hub="JailbreakBench/JBB-Behaviors", config="behaviors",
        split="benign", prompt_field="Goal",
    ),
    "strongreject_heldout": Preset(
        "harmful", "the hash-fixed third of the installed StrongREJECT prompts that a3 never generates or trains from",
        offline="strongreject_heldout",
    ),
    "overrefusal_a3": Preset(
        "benign", "a3's XSTest-style benign requests that look harmful (data/suites/overrefusal_xstest_style.jsonl)",
        offline="overrefusal_a3",
    ),
}

OVERREFUSAL_FILE = "suites/overrefusal_xstest_style.jsonl"
