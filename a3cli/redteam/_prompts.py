"""Prompts for the red-team policy: opening words of texts, shuffled deterministically, split train/held-out."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from a3cli._io import iter_jsonl
from a3cli._paths import builtin_data
from a3cli.errors import SpecError

# Shipped with the repository: ~200 neutral opening sentences (news, forum, story, everyday writing).
DEFAULT_PROMPTS_PATH = builtin_data("redteam_prompts.jsonl")


class PromptSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = None  # None: the shipped data/redteam_prompts.jsonl
    column: str = "text"
    first_words: int | None = Field(10, ge=1)  # None keeps the whole text
    min_words: int = Field(4, ge=1)  # texts shorter than this are dropped
    max_count: int | None = Field(None, ge=2)
    heldout: float | int = Field(0.2, gt=0)  # a share (< 1) or a count of held-out prompts
    seed: int = 0


class PromptSplit(BaseModel):
    train: list[str]
    heldout: list[str]


def read_texts(path: str | os.PathLike[str], column: str = "text") -> list[str]:
    """The `column` of a JSONL or CSV file (chosen by extension; `.json` lines count as JSONL)."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or column not in reader.fieldnames:
                raise SpecError(f"{path}: no column {column!r} (columns: {', '.join(reader.fieldnames or [])})")
            return [row[column] or "" for row in reader]
    if suffix not in (".jsonl", ".json", ".ndjson"):
        raise SpecError(f"{path}: prompt files must be .jsonl or .csv")
    texts = []
    for number, row in enumerate(iter_jsonl(path), 1):
        if not isinstance(row, dict) or column not in row:
            raise SpecError(f"{path}:{number}: no field {column!r}")
        if not isinstance(row[column], str):
            raise SpecError(f"{path}:{number}: field {column!r} is not a string")
        texts.append(row[column])
    return texts


def make_prompts(
    texts: list[str],
    *,
    first_words: int | None = 10,
    min_words: int = 4,
    max_count: int | None = None,
    heldout: float = 0.2,
    seed: int = 0,
) -> PromptSplit:
    """Cut each text to its first `first_words` words, drop short ones and duplicates, shuffle with `seed`,
    keep at most `max_count`, and hold out a share (`heldout` < 1) or a count (`heldout` >= 1) for evaluation."""
    seen: set[str] = set()
    prompts: list[str] = []
    for text in texts:
        words = text.split()
        if len(words) < min_words:
            continue
        prompt = " ".join(words[:first_words] if first_words else words)
        if prompt not in seen:
            seen.add(prompt)
            prompts.append(prompt)
    random.Random(seed).shuffle(prompts)
    if max_count is not None:
        prompts = prompts[:max_count]
    n_heldout = round(len(prompts) * heldout) if heldout < 1 else int(heldout)
    n_heldout = max(1, n_heldout)
    if len(prompts) - n_heldout < 1:
        raise SpecError(f"only {len(prompts)} usable prompts (>= {min_words} words): too few for a held-out split of {n_heldout}")
    return PromptSplit(train=prompts[n_heldout:], heldout=prompts[:n_heldout])


def load_prompts(settings: PromptSettings) -> PromptSplit:
    texts = read_texts(settings.path or DEFAULT_PROMPTS_PATH, settings.column)
    return make_prompts(
        texts,
        first_words=settings.first_words,
        min_words=settings.min_words,
        max_count=settings.max_count,
        heldout=settings.heldout,
        seed=settings.seed,
    )
