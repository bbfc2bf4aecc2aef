"""Finding the baseline a checkpoint is gated against: a file, or the best evidence inside a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from a3cli._io import read_json
from a3cli.errors import InfrastructureError
from a3cli.evaluate._result import EvalResult, TaskCapability
from a3cli.probes import SplitMetrics

# In a run directory, best evidence first: a full evaluation of the base model (with capability), then the split
# stage's baseline (ASR/FPR only, measured when the probes were split).
BASELINE_CANDIDATES = ("train/baseline/result.json", "eval/baseline/result.json", "split/baseline.json")


class ReferenceMetrics(BaseModel):
    """The part of a baseline file the gate reads; other fields (counts, notes) are ignored."""

    model_config = ConfigDict(extra="ignore")

    validation: SplitMetrics
    ood: SplitMetrics
    capability: dict[str, TaskCapability] | None = None


def parse_baseline(data: Any, where: str) -> EvalResult | ReferenceMetrics:
    try:
        return EvalResult.model_validate(data)
    except ValidationError:
        pass
    try:
        return ReferenceMetrics.model_validate(data)
    except ValidationError as e:
        raise InfrastructureError(
            f"{where} is not a baseline: expected an a3 eval result.json or split/baseline.json with `validation` and "
            f"`ood` metrics ({e.errors()[0]['loc']}: {e.errors()[0]['msg']})"
        ) from None


def load_baseline(path: str | Path) -> tuple[EvalResult | ReferenceMetrics, str]:
    """(baseline, the file it came from). `path` is a JSON file or a run directory (see BASELINE_CANDIDATES).
    A missing or unreadable baseline is an InfrastructureError: the gate cannot compare without it."""
    p = Path(path)
    if p.is_dir():
        for rel in BASELINE_CANDIDATES:
            if (p / rel).is_file():
                p = p / rel
                break
        else:
            raise InfrastructureError(f"no baseline in {path}: looked for {', '.join(BASELINE_CANDIDATES)}")
    elif not p.is_file():
        raise InfrastructureError(f"baseline {path} not found")
    try:
        data = read_json(p)
    except (OSError, ValueError) as e:
        raise InfrastructureError(f"cannot read the baseline {p}: {e}") from None
    return parse_baseline(data, str(p)), str(p)
