"""`a3 defend`: is fine-tuning worth it compared with cheaper defences? In-context examples, an optimised safety system
prompt and fixed-mix fine-tunes, measured like a fine-tune (validation, OOD, capability, added tokens, cost) into one
table, `run_dir/defend/table.json`."""

from a3cli.defend._gepa import GepaOutcome, dspy_available, optimize_prompt_gepa
from a3cli.defend._icl import ICLAttempt, largest_remainder, nearest_chooser, run_icl
from a3cli.defend._inputs import DefendInputError, DefendInputs, ICLPair, load_inputs
from a3cli.defend._library import LIBRARY_PATH, SafetyLibrary, SafetyPrompt, load_library
from a3cli.defend._mix import fixed_hyperparams, mix_examples, run_mix
from a3cli.defend._prompt import PromptCandidate, run_prompt, search_prompt_offline
from a3cli.defend._run import STAGE, TABLE, baseline_row, read_table, render_rate, run_defend
from a3cli.defend._select import RULE, choose
from a3cli.defend._tokens import TokenCounter
from a3cli.defend._types import METHODS, AddedTokens, DefenceCost, DefenceRow, DefendResult, Method, MethodResult, SearchCost

__all__ = [
    "LIBRARY_PATH", "METHODS", "RULE", "STAGE", "TABLE", "AddedTokens", "DefenceCost", "DefenceRow", "DefendInputError",
    "DefendInputs", "DefendResult", "GepaOutcome", "ICLAttempt", "ICLPair", "Method", "MethodResult", "PromptCandidate",
    "SafetyLibrary", "SafetyPrompt", "SearchCost", "TokenCounter", "baseline_row", "choose", "dspy_available", "fixed_hyperparams",
    "largest_remainder", "load_inputs", "load_library", "mix_examples", "nearest_chooser", "optimize_prompt_gepa",
    "read_table", "render_rate", "run_defend", "run_icl", "run_mix", "run_prompt", "search_prompt_offline",
]
