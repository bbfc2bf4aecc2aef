"""The attack spec: data model, YAML loading with located errors, linting, JSON Schema and import of A3 configs."""

from a3cli.spec._import import ImportReport, import_a3_config
from a3cli.spec._lint import lint_spec
from a3cli.spec._load import SpecIssue, SpecLoadError, load_spec, parse_spec_text, spec_hash
from a3cli.spec._models import (
    SPEC_VERSION,
    Attack,
    Benchmark,
    Capability,
    ClassifierJudge,
    Defenses,
    Expected,
    Gate,
    GenerateConfig,
    Generation,
    IntentJudge,
    JudgeDef,
    Judges,
    LLMJudge,
    LLMPrompt,
    Message,
    ModelRef,
    ProbeFormat,
    Redteam,
    RefusalKeywordsJudge,
    Roles,
    SearchSpace,
    Seed,
    Spec,
    Split,
    Suite,
    Training,
    template_fields,
)
from a3cli.spec._offline_fit import offline_generator_warning, offline_mismatch
from a3cli.spec._schema import SCHEMA_FILE, render_schema, spec_json_schema
from a3cli.spec._token_limits import ROLE_TOKENS, default_max_tokens, larger_limit, needed_tokens, role_max_tokens

__all__ = [
    "ROLE_TOKENS", "SCHEMA_FILE", "SPEC_VERSION", "Attack", "Benchmark", "Capability", "ClassifierJudge", "Defenses", "Expected",
    "Gate", "GenerateConfig", "Generation", "ImportReport", "IntentJudge", "JudgeDef", "Judges", "LLMJudge", "LLMPrompt", "Message",
    "ModelRef", "ProbeFormat", "Redteam", "RefusalKeywordsJudge", "Roles", "SearchSpace", "Seed", "Spec", "SpecIssue",
    "SpecLoadError", "Split", "Suite", "Training", "default_max_tokens", "import_a3_config", "larger_limit", "lint_spec",
    "load_spec", "needed_tokens", "offline_generator_warning", "offline_mismatch", "parse_spec_text",
    "render_schema", "role_max_tokens", "spec_hash", "spec_json_schema", "template_fields",
]
