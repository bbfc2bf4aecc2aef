"""`a3 spec import`: convert an original A3 JSON config into an a3 YAML spec, saying what was dropped."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from a3cli.errors import SpecError
from a3cli.spec._models import SPEC_VERSION, Spec, template_fields

SCHEMA_COMMENT = "# yaml-language-server: $schema={schema}\n"


class ImportReport:
    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.notes: list[str] = []

    def drop(self, path: str, why: str) -> None:
        self.dropped.append(f"{path}: {why}")


def _model_for(name: str, *, base_url: str | None = None) -> dict[str, Any]:
    """A3 named API models only; a3 needs a provider. Claude models go to Anthropic, the rest to an OpenAI-compatible server."""
    if name.startswith("claude"):
        return {"provider": "anthropic", "model": name, "api_key_env": "ANTHROPIC_API_KEY"}
    return {
        "provider": "openai",
        "model": name,
        "base_url": base_url or "https://openrouter.ai/api/v1",
        "api_key_env": "OPENROUTER_API_KEY",
    }


def _generate(section: dict[str, Any], report: ImportReport, path: str, *, keys=("max_tokens", "temperature")) -> dict[str, Any]:
    out: dict[str, Any] = {}
    max_key, temp_key = keys
    if max_key in section:
        out["max_tokens"] = int(section[max_key])
    if temp_key in section:
        out["temperature"] = float(section[temp_key])
    return out


def _template_to_prompt(template: str, report: ImportReport, path: str) -> str:
    """a3 fills {prompt}; A3 templates sometimes name the query differently. Rename a single unknown placeholder."""
    names = template_fields(template)
    if "prompt" in names:
        return template
    if len(names) == 1:
        (only,) = names
        report.notes.append(f"{path}: placeholder {{{only}}} renamed to {{prompt}}")
        return template.replace("{" + only + "}", "{prompt}")
    report.notes.append(f"{path}: no {{prompt}} placeholder; the prompt is appended after the template")
    return template.replace("{", "{{").replace("}", "}}") + "\n\n{prompt}"


def _find_in_checkout(relative: str, config_path: Path | None, a3_root: Path | None) -> Path | None:
    """An A3 `paths.*` entry: absolute, or relative to the A3 checkout, which is `a3_root` when given, else guessed as
    the config's folder or one above it (A3 keeps configs under configs/)."""
    path = Path(relative).expanduser()
    if path.is_absolute():
        return path if path.is_file() else None
    roots = [a3_root] if a3_root is not None else ([config_path.resolve().parent, *config_path.resolve().parents] if config_path else [])
    for root in roots:
        if (root / path).is_file():
            return (root / path).resolve()
    return None


def _general_data(relative: str, report: ImportReport, config_path: Path | None, a3_root: Path | None, out_dir: Path | None) -> str | None:
    """The spec's `training.general_data.source` for A3's DOLCI responses file: found in the checkout and written
    relative to the output spec (spec paths are relative to the spec's folder), or None for a3's built-in data."""
    found = _find_in_checkout(relative, config_path, a3_root)
    if found is None:
        where = f"in {a3_root}" if a3_root is not None else "next to the config or in a folder above it (pass --a3-root)"
        report.notes.append(
            f"paths.dolci_responses_file: {relative} is not {where}; training uses a3's built-in general data instead"
        )
        return None
    base = (out_dir or Path.cwd()).resolve()
    try:
        value = os.path.relpath(found, base)
    except ValueError:  # another drive on Windows
        value = str(found)
    if value != relative:
        report.notes.append(f"paths.dolci_responses_file: {relative} found at {found}; written as {value} (relative to the spec)")
    return value


def convert_a3_config(
    config: dict[str, Any], *, config_path: Path | None = None, a3_root: Path | None = None, out_dir: Path | None = None
) -> tuple[dict[str, Any], ImportReport]:
    """`config_path` and `a3_root` locate files the config names relative to the A3 checkout; `out_dir` is the folder
    of the spec being written (its file paths are relative to it)."""
    report = ImportReport()
    known = {
        "attack", "seed_example", "judge_prompts", "conversation_format", "target_model", "judge_model",
        "hypothesis_generation", "data_generation", "paths", "expected_behavior_prompts",
    }
    for key in config:
        if key not in known:
            report.drop(key, "not an A3 config section a3 knows")
    try:
        attack = config["attack"]
        seed_example = config["seed_example"]
        judge_prompts = config["judge_prompts"]
    except KeyError as e:
        raise SpecError(f"the A3 config has no `{e.args[0]}` section") from None

    key = re.sub(r"[^a-z0-9_\-]+", "-", str(attack.get("key", attack.get("name", "attack"))).lower()).strip("-") or "attack"
    spec: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "attack": {"name": attack.get("name", key), "key": key, "description": attack.get("description", attack.get("name", key))},
    }

    seed: dict[str, Any] = {}
    if seed_example.get("format", "prompt") == "conversation":
        turns = list(seed_example.get("conversation") or [])
        system = [t["content"] for t in turns if t.get("role") == "system"]
        if system:
            seed["system"] = "\n\n".join(system)
        seed["conversation"] = [{"role": t["role"], "content": t["content"]} for t in turns if t.get("role") != "system"]
        seed["bad_reply"] = seed_example.get("target_continuation", "")
    else:
        seed["prompt"] = seed_example.get("evaluator_prompt", "")
        seed["bad_reply"] = seed_example.get("target_response", "")
    spec["seed"] = seed

    target = config.get("target_model", {})
    weights, served = target.get("huggingface_model_path"), target.get("model_name")
    if served:
        # A3 generates through the served endpoint and fine-tunes the Hugging Face weights: so does a3 (target.weights).
        spec["target"] = _model_for(served, base_url=target.get("base_url")) | {"generate": _generate(target, report, "target_model")}
        if target.get("base_url") and "openrouter.ai" not in target["base_url"]:
            spec["target"].pop("api_key_env", None)  # never send an OpenRouter key to a self-hosted server
            report.notes.append("target.api_key_env left out for the self-hosted target_model.base_url; set it if the server needs a key")
        if weights:
            spec["target"]["weights"] = weights
            report.notes.append("target: generate, split, eval and the defences call the served model; `a3 train` fine-tunes target.weights")
        else:
            report.notes.append("target_model has no huggingface_model_path: `a3 train` needs the weights; set target.weights")
    elif weights:
        spec["target"] = {"provider": "local", "model": weights, "generate": _generate(target, report, "target_model")}
    else:
        raise SpecError("the A3 config's `target_model` names no model")
    if "request_timeout" in target:
        spec["target"]["timeout_s"] = float(target["request_timeout"])
    if "icl_eval_model" in target:
        report.drop("target_model.icl_eval_model", "in-context defences evaluate the target itself")

    roles: dict[str, Any] = {}
    judge_model = config.get("judge_model", {})
    if judge_model.get("model_name"):
        roles["judge"] = _model_for(judge_model["model_name"]) | {"generate": _generate(judge_model, report, "judge_model")}
        roles["expected"] = _model_for(judge_model["model_name"])
        report.notes.append("roles.expected uses the judge model (A3 wrote expected behaviours with it)")
    hypo = config.get("hypothesis_generation", {})
    if hypo.get("llm_model"):
        roles["generator"] = _model_for(hypo["llm_model"]) | {
            "generate": _generate(hypo, report, "hypothesis_generation", keys=("llm_max_tokens", "llm_temperature"))
        }
        roles["agent"] = _model_for(hypo["llm_model"])
        report.notes.append("roles.agent uses the hypothesis-generation model")
    spec["roles"] = roles

    judges: dict[str, Any] = {}
    for a3_name, ours, field in (("harmful_detection", "harmful", "harmful"), ("refusal_detection", "refusal", "refused")):
        section = judge_prompts.get(a3_name)
        if not section:
            raise SpecError(f"the A3 config has no `judge_prompts.{a3_name}`")
        judges[ours] = {
            "type": "llm",
            "prompt": {"system": section["system"], "user_template": section["user_template"]},
            "verdict_field": field,
        }
    spec["judges"] = judges

    fmt = config.get("conversation_format", {})
    probes: dict[str, Any] = {"format": fmt.get("output_format", "prompt")}
    if probes["format"] == "conversation":
        probes["turns"] = int(fmt.get("num_turns", 1))
    if "include_system_prompt" in fmt:
        probes["system_prompt"] = bool(fmt["include_system_prompt"])
    if seed_example.get("format") == "conversation":
        probes["format"] = "conversation"
    spec["probes"] = probes

    generation: dict[str, Any] = {}
    if "max_ideas" in hypo:
        generation["hypotheses_per_round"] = int(hypo["max_ideas"])
    if "max_concrete_examples" in hypo:
        generation["probes_per_hypothesis"] = int(hypo["max_concrete_examples"]) * int(hypo.get("max_variations_per_example", 1))
    data_gen = config.get("data_generation", {})
    if "max_concurrent" in data_gen:
        generation["concurrency"] = int(data_gen["max_concurrent"])
    for dropped in ("num_variations", "parallel_requests"):
        if dropped in data_gen:
            report.drop(f"data_generation.{dropped}", "a3 sets variations by probes_per_hypothesis and concurrency per model")
    spec["generation"] = generation

    paths = config.get("paths", {})
    if paths.get("dolci_responses_file"):
        source = _general_data(str(paths["dolci_responses_file"]), report, config_path, a3_root, out_dir)
        if source is not None:
            spec["training"] = {"general_data": {"source": source}}
    if paths.get("behaviors_file"):
        report.drop("paths.behaviors_file", "a3 keeps the behaviour description in `attack`")

    ebp = config.get("expected_behavior_prompts", {})
    expected: dict[str, Any] = {}
    for field in ("harmful_system_prompt", "benign_system_prompt", "harmful_default_response", "benign_default_response"):
        if ebp.get(field):
            expected[field] = ebp[field]
    for field in ("harmful_user_template", "benign_user_template"):
        if ebp.get(field):
            expected[field] = _template_to_prompt(ebp[field], report, f"expected_behavior_prompts.{field}")
    if expected:
        spec["expected"] = expected
    # A3's baselines as its scripts run them: run_icl_defense.py (20 examples, 5 iterations; its three selection
    # methods are a3's default with an agent) and run_dspy_defense.py (GEPA auto=medium). The fixed-mix defaults
    # (run_sft_with_fixed_mixing.py) are A3's already.
    spec["defenses"] = {"icl": {"k": 20, "iterations": 5}, "prompt": {"auto": "medium"}}
    report.notes.append("defenses: A3's settings (in-context k 20 over 5 iterations, GEPA auto=medium; the fixed-mix defaults are A3's)")
    return spec, report


def import_a3_config(
    path: str | Path,
    *,
    schema_ref: str = "../schemas/attack-spec.schema.json",
    a3_root: Path | None = None,
    out_dir: Path | None = None,
) -> tuple[str, ImportReport]:
    """Read an A3 JSON config and return (YAML text of a validated a3 spec, report of what was dropped).

    `a3_root` is the A3 checkout the config's relative paths refer to (guessed from the config's location when None);
    `out_dir` is where the spec will be written (default: the current folder)."""
    from a3cli.spec._load import SpecLoadError, read_spec_text

    try:
        text = read_spec_text(path)  # the same size, encoding and readability checks as a spec
    except SpecLoadError as e:
        raise SpecError(e.issues[0].render().replace(": error:", ":", 1)) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be an A3 config") from None
    if not isinstance(config, dict):
        raise SpecError(f"{path}: an A3 config is a JSON object")
    data, report = convert_a3_config(config, config_path=Path(path), a3_root=a3_root, out_dir=out_dir)
    try:
        Spec.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors(include_input=False, include_url=False))
        raise SpecError(f"{path}: the converted spec is not valid: {problems}") from None
    text = SCHEMA_COMMENT.format(schema=schema_ref) + f"# Imported from {Path(path).name} by `a3 spec import`.\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    return text, report
