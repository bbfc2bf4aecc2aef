"""External safety suites: prompt sets measured on the baseline and on every checkpoint, gated, and never read to
generate, pick topics, swap topics, train or choose. Presets name the well-known ones (StrongREJECT, HarmBench,
XSTest, OR-Bench-Hard-1K, JailbreakBench) by their Hub ids; two offline presets ship with a3."""

from a3cli.suites._load import LoadedSuite, load_suite, resolved_kind
from a3cli.suites._presets import OVERREFUSAL_FILE, PRESETS, Preset

__all__ = ["OVERREFUSAL_FILE", "PRESETS", "LoadedSuite", "Preset", "load_suite", "resolved_kind"]
