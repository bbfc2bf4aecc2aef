"""`a3 generate`: hypotheses, harmful probes with benign twins, target replies and verdicts, and the experiment log."""

from a3cli.stages.generate._log import ExperimentLog, HypothesisEntry, LoggedExample
from a3cli.stages.generate._offline import StrategyBandit
from a3cli.stages.generate._stage import (
    CODE_VERSION,
    IMPORT_HYPOTHESIS,
    SEED_HYPOTHESIS,
    STAGE,
    NoUsableImports,
    add_imported_family,
    run_generate,
)
from a3cli.stages.generate._strategies import STRATEGIES, Context, Draft, StrategyInfo, chain_name, render_probe, valid_chain
from a3cli.stages.generate._topics import ALL_BENIGN, BENIGN_TOPICS, Topic, TopicPool, build_topic_pool, seed_request
from a3cli.stages.generate._validate import validate_probe

__all__ = [
    "ALL_BENIGN",
    "BENIGN_TOPICS",
    "CODE_VERSION",
    "IMPORT_HYPOTHESIS",
    "SEED_HYPOTHESIS",
    "STAGE",
    "STRATEGIES",
    "Context",
    "Draft",
    "ExperimentLog",
    "HypothesisEntry",
    "LoggedExample",
    "NoUsableImports",
    "StrategyBandit",
    "StrategyInfo",
    "Topic",
    "TopicPool",
    "add_imported_family",
    "build_topic_pool",
    "chain_name",
    "render_probe",
    "run_generate",
    "seed_request",
    "valid_chain",
    "validate_probe",
]
