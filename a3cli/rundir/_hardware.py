"""The machine a figure was measured on: CPU model and its matrix features (AMX, AVX-512, AVX2), and the GPU.

The same spec gives different adapters and rates on different hardware (bf16 on AMX or a GPU, fp32 elsewhere), so
every manifest records where it ran; "deterministic" holds for the same hardware and precision only."""

from __future__ import annotations

import functools
import os
import platform
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MatrixUnit = Literal["amx", "avx512", "avx2", "other"]
# The CPU flags that decide how fast (and in which precision) torch runs a model on this CPU.
_FLAGS_OF_NOTE = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "fma")


class Hardware(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = Field(description="CPU model name.")
    cores: int = Field(description="Logical CPUs this process may use.")
    matrix: MatrixUnit = Field(description="The fastest matrix unit: amx (bf16 several times faster), avx512, avx2, other.")
    cpu_flags: list[str] = Field(default_factory=list, description="Matrix-relevant flags present (amx_*, avx512*, avx2, fma).")
    gpu: str | None = Field(None, description="CUDA device name when torch sees one.")

    def describe(self) -> str:
        """One line for tables: 'AMD EPYC, 2 cores, AVX2 only (no AMX)' or '... + NVIDIA H100'."""
        unit = {"amx": "AMX", "avx512": "AVX-512 (no AMX)", "avx2": "AVX2 only (no AMX)", "other": "no AVX2 (no AMX)"}[self.matrix]
        return f"{self.cpu}, {self.cores} cores, {unit}" + (f", GPU {self.gpu}" if self.gpu else "")


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:  # not Linux: the name from platform, flags unknown
        pass
    return name or platform.processor() or platform.machine() or "unknown CPU", flags


def _gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@functools.lru_cache(maxsize=1)
def machine() -> Hardware:
    name, flags = _cpuinfo()
    matrix: MatrixUnit = (
        "amx" if "amx_tile" in flags else "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "other"
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Hardware(cpu=name, cores=cores, matrix=matrix, cpu_flags=[f for f in _FLAGS_OF_NOTE if f in flags], gpu=_gpu_name())
