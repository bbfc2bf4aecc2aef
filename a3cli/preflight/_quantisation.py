"""4-bit (QLoRA, NF4) loading needs a CUDA GPU and bitsandbytes. Checked before any model loads, so a spec asking for it
on a machine without them stops in a second with one sentence instead of after minutes of loading (exit 3: what is
missing is this machine's, not the spec's)."""

from __future__ import annotations

import importlib.util

from a3cli.errors import InfrastructureError


class QuantisationUnavailable(InfrastructureError):
    """4-bit loading was asked for, but bitsandbytes or a CUDA GPU is missing."""


def check_4bit(field: str) -> None:
    """Raise QuantisationUnavailable naming everything `field: true` lacks here (bitsandbytes, a CUDA GPU)."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the package 'bitsandbytes' is not installed (pip install 'a3[qlora]')")
    import torch

    if not torch.cuda.is_available():
        missing.append("torch sees no CUDA GPU")
    if missing:
        raise QuantisationUnavailable(
            f"{field}: loading in 4-bit (NF4, QLoRA) needs a CUDA GPU and bitsandbytes, but {' and '.join(missing)}. "
            f"Set {field}: false to train in full precision on this machine. Nothing was run"
        )
