"""Every model call in a3 (target, generator, judge, expected replies, agent) goes through this layer.

    from a3cli.llm import Engine, make_request
    engine = Engine()
    replies = engine.generate_sync([make_request(spec.target, "Hello")])

Providers (`anthropic`, `openai`, `local`, `scripted`) register with `@register_provider(name)`; the Engine adds a
content-addressed SQLite cache, de-duplication, per-model concurrency, timeouts, retries with back-off and Retry-After,
and usage/cost accounting. A call that finally fails is a Response with `error` set, never an empty or safe reply.
"""

from a3cli.llm._ask import Answer, Unusable, ask, correction_turn
from a3cli.llm._cache import CACHE_MODES, Cache, CacheMode, CacheStats, cache_key, default_cache_path
from a3cli.llm._engine import TRANSIENT_FAILURES, Engine, FailedCall
from a3cli.llm._local import unload_local_models
from a3cli.llm._outcomes import OutcomeMeter, RoleOutcomes, outcome_line, outcomes_since, record_outcome
from a3cli.llm._provider import (
    RETRYABLE,
    Completion,
    Provider,
    ProviderError,
    register_provider,
    registered_providers,
)
from a3cli.llm._scripted import ScriptRule, load_rules, scripted_model, unregister_script
from a3cli.llm._secrets import MissingAPIKeyError, scrub
from a3cli.llm._sync import run_sync
from a3cli.llm._types import CallError, ErrorKind, Request, Response, Role, Usage, make_request
from a3cli.llm._usage import PRICES_PER_MTOK, RoleUsage, UsageReport

__all__ = [
    "CACHE_MODES",
    "PRICES_PER_MTOK",
    "RETRYABLE",
    "TRANSIENT_FAILURES",
    "Answer",
    "Cache",
    "CacheMode",
    "CacheStats",
    "CallError",
    "Completion",
    "Engine",
    "ErrorKind",
    "FailedCall",
    "MissingAPIKeyError",
    "OutcomeMeter",
    "Provider",
    "ProviderError",
    "Request",
    "Response",
    "Role",
    "RoleOutcomes",
    "RoleUsage",
    "ScriptRule",
    "Unusable",
    "Usage",
    "UsageReport",
    "ask",
    "cache_key",
    "correction_turn",
    "default_cache_path",
    "load_rules",
    "make_request",
    "outcome_line",
    "outcomes_since",
    "record_outcome",
    "register_provider",
    "registered_providers",
    "run_sync",
    "scripted_model",
    "scrub",
    "unload_local_models",
    "unregister_script",
]
