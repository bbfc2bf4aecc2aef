"""`a3 compare`: several targets measured side by side on one run's validation, OOD and suite probes."""

from a3cli.compare._run import STAGE, TABLE, check_targets, read_comparison, run_compare
from a3cli.compare._targets import compare_targets, parse_target
from a3cli.compare._types import CompareResult, CompareRow

__all__ = ["STAGE", "TABLE", "CompareResult", "CompareRow", "check_targets", "compare_targets", "parse_target", "read_comparison", "run_compare"]
