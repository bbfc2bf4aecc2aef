"""Does a LoRA adapter fit a base model? Checked from file headers only (safetensors headers, adapter_config.json),
before either is loaded: peft itself would load a mismatched adapter with a shape error deep in torch, or, when the
module names differ, silently skip the missing weights and evaluate the bare base model."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from a3cli.errors import SpecError

_MAX_HEADER = 100 * 1024 * 1024
_LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}
_PEFT_PREFIX = "base_model.model."


class AdapterMismatchError(SpecError):
    """The adapter was made for another base model (exit 2: the user named the wrong pair)."""


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors file's JSON header (the tensors themselves are not read)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path} is too short to be a safetensors file")
        (size,) = struct.unpack("<Q", head)
        if size > _MAX_HEADER:
            raise ValueError(f"{path} has an implausible safetensors header")
        header = json.loads(f.read(size))
    return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}


def base_shapes(folder: Path) -> dict[str, list[int]] | None:
    """Weight shapes of a model folder (single or sharded safetensors); None when it has no safetensors to read."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        files = [folder / s for s in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files or not all(f.is_file() for f in files):
        return None
    shapes: dict[str, list[int]] = {}
    for f in files:
        shapes.update(safetensors_shapes(f))
    return shapes


def _base_key(module: str, shapes: dict[str, list[int]]) -> str | None:
    for candidate in (f"{module}.weight", f"{module}.base_layer.weight"):
        if candidate in shapes:
            return candidate
    if module.endswith("lm_head") and "model.embed_tokens.weight" in shapes:
        return "model.embed_tokens.weight"  # tied output embedding: the base has only the input one
    return None


def check_adapter_fits(base_folder: Path, adapter_folder: Path, *, base_label: str) -> list[str]:
    """Raise AdapterMismatchError when the adapter's LoRA weights do not fit the base's weights (a module the base
    lacks, or a shape the base's layer does not have). Returns notes about what could not be checked, or a base name
    in adapter_config.json that differs from `base_label` while every shape fits."""
    config_path = adapter_folder / "adapter_config.json"
    if not config_path.is_file():
        raise SpecError(f"{adapter_folder} is not a LoRA adapter folder: it has no adapter_config.json")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpecError(f"{config_path} is not readable JSON") from None
    named = str(config.get("base_model_name_or_path") or "")
    weights = adapter_folder / "adapter_model.safetensors"
    if not weights.is_file():
        return [f"{adapter_folder} holds no adapter_model.safetensors, so its fit to the base was not checked before loading"]
    shapes = base_shapes(base_folder)
    if shapes is None:
        return [f"the base {base_label} has no safetensors weights to compare the adapter with; fit not checked before loading"]
    try:
        lora = safetensors_shapes(weights)
    except (OSError, ValueError) as e:
        raise SpecError(f"{weights} is not a readable safetensors file ({e})") from None
    problems: list[str] = []
    checked = 0
    for key, shape in lora.items():
        side = next((s for suffix, s in _LORA_SUFFIXES.items() if key.endswith(suffix)), None)
        if side is None:
            continue
        module = key.removeprefix(_PEFT_PREFIX)[: -len(".lora_X.weight")]
        base_key = _base_key(module, shapes)
        checked += 1
        if base_key is None:
            problems.append(f"the base has no layer `{module}`")
            continue
        out_features, in_features = shapes[base_key][0], shapes[base_key][-1]
        got, want = (shape[-1], in_features) if side == "A" else (shape[0], out_features)
        if got != want:
            problems.append(f"`{module}` takes {want} features in the base but {got} in the adapter")
    if problems:
        made_for = f"it was trained on {named!r} (adapter_config.json)" if named else "adapter_config.json names no base"
        raise AdapterMismatchError(
            f"the adapter {adapter_folder} does not fit the model {base_label}: {made_for}, and {len(problems)} of its "
            f"{checked} LoRA weights do not match the base ({problems[0]}). Pass the base model it was trained on"
        )
    if checked == 0:
        raise AdapterMismatchError(f"the adapter {adapter_folder} holds no LoRA weights (no lora_A/lora_B tensors)")
    notes = []
    if named and not _same_name(named, base_label, base_folder):
        notes.append(
            f"adapter_config.json of {adapter_folder} names the base {named!r}, not {base_label}; every LoRA weight fits "
            "the given base's shapes, so it is used as given"
        )
    return notes


def _same_name(named: str, label: str, folder: Path) -> bool:
    def norm(x: str) -> str:
        return x.rstrip("/").rsplit("/", 1)[-1].lower()

    try:
        if Path(named).expanduser().resolve() == folder.resolve():
            return True
    except OSError:
        pass
    return norm(named) in {norm(label), norm(str(folder))}
