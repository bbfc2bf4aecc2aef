"""The candidate safety-prompt library (`data/safety_prompts.yaml`): system prompts made of a safety part and an
optional helpfulness part, so the offline search can recombine the best parts of different prompts."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from a3cli._paths import builtin_data
from a3cli.errors import SpecError

LIBRARY_PATH = builtin_data("safety_prompts.yaml")

Style = Literal["terse", "principled", "example-led", "refusal-style", "helpfulness-balanced", "wrapper-aware", "persona"]


class SafetyPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    style: Style
    safety: str = Field(min_length=1)
    helpfulness: str | None = None
    seed: bool = False

    @property
    def text(self) -> str:
        return " ".join(part.strip() for part in (self.safety, self.helpfulness) if part)


class SafetyLibrary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: list[SafetyPrompt] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique(self) -> SafetyLibrary:
        ids = [p.id for p in self.prompts]
        if len(ids) != len(set(ids)):
            raise ValueError("prompt ids must be unique")
        if sum(p.seed for p in self.prompts) != 1:
            raise ValueError("exactly one prompt must have `seed: true` (GEPA's starting instruction)")
        return self

    @property
    def seed(self) -> SafetyPrompt:
        return next(p for p in self.prompts if p.seed)


@functools.lru_cache(maxsize=4)
def load_library(path: str | Path = LIBRARY_PATH) -> SafetyLibrary:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        return SafetyLibrary.model_validate(raw)
    except OSError as e:
        raise SpecError(f"cannot read the safety-prompt library {p}: {e.strerror or e}") from None
    except (yaml.YAMLError, ValidationError) as e:
        raise SpecError(f"{p}: invalid safety-prompt library ({str(e).splitlines()[0]})") from None


def diverse_first(library: SafetyLibrary, n: int) -> list[SafetyPrompt]:
    """n prompts covering the styles: the seed first, then round-robin over styles in file order."""
    by_style: dict[str, list[SafetyPrompt]] = {}
    for p in library.prompts:
        if not p.seed:
            by_style.setdefault(p.style, []).append(p)
    out = [library.seed]
    while len(out) < n and any(by_style.values()):
        for group in by_style.values():
            if group and len(out) < n:
                out.append(group.pop(0))
    return out
