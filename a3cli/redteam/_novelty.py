"""Novelty and diversity of red-team attacks, after curiosity-driven red-teaming (Hong et al., ICLR 2024).

An RL red-teamer collapses onto a few phrasings that work. Two novelty terms push it away from what already succeeded:
- n-gram: 1 - BLEU of the attack against the earlier successful attacks (multi-reference BLEU, averaged over n-gram
  orders 2-4 as Hong et al. average SelfBLEU over several orders);
- embedding: 1 - the mean cosine similarity of its sentence embedding (all-MiniLM-L6-v2) to theirs.

The same two measures, taken over a set of attacks against each other, are the diversity metrics reported beside
distinct-1/2: 1 - SelfBLEU and 1 - mean pairwise cosine similarity.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from a3cli.errors import UsageError

from ._rewards import RewardFn, call_reward, words

NGRAM_ORDERS = (2, 3, 4)
Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> unit-length rows


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class BleuReferences:
    """A growing set of reference texts for multi-reference BLEU: per n-gram its largest count in any one reference
    (the clipping count) and the sorted reference lengths (for the brevity penalty), kept incrementally."""

    def __init__(self, orders: Sequence[int] = NGRAM_ORDERS):
        self.orders = tuple(orders)
        self.max_counts: dict[int, dict[tuple[str, ...], int]] = {n: {} for n in range(1, max(self.orders) + 1)}
        self.lengths: list[int] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, text: str) -> None:
        tokens = words(text)
        for n, table in self.max_counts.items():
            for gram, count in _ngrams(tokens, n).items():
                if count > table.get(gram, 0):
                    table[gram] = count
        bisect.insort(self.lengths, len(tokens))

    def bleu(self, text: str, max_n: int) -> float:
        """BLEU-`max_n` of `text` against every reference: clipped n-gram precisions for n = 1..max_n (each with +1
        smoothing above n = 1, so one missing 4-gram does not zero the score), geometric mean, brevity penalty."""
        tokens = words(text)
        if not tokens or not self.lengths:
            return 0.0
        log_sum = 0.0
        for n in range(1, max_n + 1):
            grams = _ngrams(tokens, n)
            total = sum(grams.values())
            matched = sum(min(c, self.max_counts[n].get(g, 0)) for g, c in grams.items())
            if n == 1:
                if matched == 0:
                    return 0.0
                log_sum += math.log(matched / total)
            else:
                log_sum += math.log((matched + 1) / (total + 1))
        closest = self._closest_length(len(tokens))
        brevity = 1.0 if len(tokens) >= closest else math.exp(1 - closest / len(tokens))
        return brevity * math.exp(log_sum / max_n)

    def mean_bleu(self, text: str) -> float:
        """BLEU averaged over the n-gram orders (the SelfBLEU reward of Hong et al.)."""
        return sum(self.bleu(text, n) for n in self.orders) / len(self.orders)

    def _closest_length(self, length: int) -> int:
        i = bisect.bisect_left(self.lengths, length)
        near = [self.lengths[j] for j in (i - 1, i) if 0 <= j < len(self.lengths)]
        return min(near, key=lambda r: (abs(r - length), r))


def self_bleu(texts: Sequence[str], orders: Sequence[int] = NGRAM_ORDERS) -> float | None:
    """SelfBLEU (Zhu et al. 2018): each text's BLEU against all the others, averaged. None for fewer than two texts."""
    if len(texts) < 2:
        return None
    scores = []
    for i, text in enumerate(texts):
        refs = BleuReferences(orders)
        for j, other in enumerate(texts):
            if j != i:
                refs.add(other)
        scores.append(refs.mean_bleu(text))
    return sum(scores) / len(scores)


def mean_pairwise_cosine(vectors: np.ndarray) -> float | None:
    """Mean cosine similarity over distinct pairs of unit-length rows; None for fewer than two."""
    n = len(vectors)
    if n < 2:
        return None
    sims = vectors @ vectors.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def minilm_embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2 (a3cli.assets.embed), loaded once."""
    from a3cli.assets import embed, load_sentence_embedder

    model = load_sentence_embedder()
    return lambda texts: embed(list(texts), model=model)


class Diversity(BaseModel):
    """How different a set of attacks is: distinct-1/2 (unique / all word n-grams), 1 - SelfBLEU and 1 - the mean
    pairwise cosine similarity of their sentence embeddings. A measure needing two texts is None with fewer."""

    n: int
    distinct_1: float
    distinct_2: float
    self_bleu_diversity: float | None  # 1 - SelfBLEU
    embedding_diversity: float | None  # 1 - mean pairwise cosine similarity; None when no embedder was given


def diversity(texts: Sequence[str], embedder: Embedder | None = None) -> Diversity:
    from ._evaluate import distinct_n

    sb = self_bleu(texts)
    cos = mean_pairwise_cosine(embedder(texts)) if embedder is not None and len(texts) >= 2 else None
    return Diversity(
        n=len(texts),
        distinct_1=distinct_n(texts, 1),
        distinct_2=distinct_n(texts, 2),
        self_bleu_diversity=None if sb is None else 1.0 - sb,
        embedding_diversity=None if cos is None else 1.0 - cos,
    )


class NoveltyReward:
    """`reward + ngram * n-gram novelty + embedding * embedding novelty`, the novelty of each attack measured against
    the earlier successful attacks (those whose base reward reached `success_threshold`), at most `history` of them.

    A sample the base reward leaves unscored stays unscored and never joins the history. The history is the state a
    resumed run restores (`state_dict` / `load_state_dict`); the last batch's terms are in `last_stats` for logging.
    """

    def __init__(
        self,
        base: RewardFn,
        *,
        ngram: float = 0.0,
        embedding: float = 0.0,
        success_threshold: float = 0.5,
        history: int = 1024,
        embedder: Embedder | None = None,
    ):
        if ngram < 0 or embedding < 0 or (ngram == 0 and embedding == 0):
            raise UsageError("novelty: give the n-gram or the embedding term a positive weight")
        if history < 1:
            raise UsageError("novelty: history must be at least 1")
        self.base, self.ngram, self.embedding = base, float(ngram), float(embedding)
        self.success_threshold, self.history_size = float(success_threshold), int(history)
        self.embedder = embedder if embedder is not None or embedding == 0 else minilm_embedder()
        self.history: deque[str] = deque(maxlen=self.history_size)
        self._vectors: deque[np.ndarray] = deque(maxlen=self.history_size)
        self.last_stats: dict[str, float] = {}
        self.__name__ = f"{getattr(base, '__name__', 'reward')}+novelty"

    def novelty(self, texts: Sequence[str]) -> tuple[list[float], list[float]]:
        """(n-gram novelty, embedding novelty) of each text against the current history; 1 when it is empty."""
        ngram = [1.0] * len(texts)
        if self.ngram > 0 and self.history:
            refs = BleuReferences()
            for text in self.history:
                refs.add(text)
            ngram = [1.0 - refs.mean_bleu(t) for t in texts]
        emb = [1.0] * len(texts)
        if self.embedding > 0 and self._vectors and texts:
            assert self.embedder is not None
            sims = self.embedder(texts) @ np.stack(list(self._vectors)).T
            emb = [float(1.0 - s) for s in sims.mean(axis=1)]
        return ngram, emb

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float | None]:
        scores = call_reward(self.base, prompts, completions)
        ngram, emb = self.novelty(completions)
        total: list[float | None] = [
            None if s is None else s + self.ngram * g + self.embedding * e for s, g, e in zip(scores, ngram, emb, strict=True)
        ]
        successes = [c for c, s in zip(completions, scores, strict=True) if s is not None and s >= self.success_threshold]
        self._remember(successes)
        scored = [i for i, s in enumerate(scores) if s is not None]
        self.last_stats = {
            "novelty_ngram": sum(ngram[i] for i in scored) / len(scored) if scored else float("nan"),
            "novelty_embedding": sum(emb[i] for i in scored) / len(scored) if scored else float("nan"),
            "successes": float(len(successes)),
            "history": float(len(self.history)),
        }
        return total

    def _remember(self, texts: list[str]) -> None:
        if not texts:
            return
        self.history.extend(texts)
        if self.embedding > 0:
            assert self.embedder is not None
            self._vectors.extend(np.asarray(v, dtype=np.float32) for v in self.embedder(texts))

    def state_dict(self) -> dict[str, Any]:
        base = self.base.state_dict() if hasattr(self.base, "state_dict") else None
        return {"history": list(self.history), "base": base}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.clear()
        self._vectors.clear()
        self._remember(list(state.get("history", [])))
        if state.get("base") is not None and hasattr(self.base, "load_state_dict"):
            self.base.load_state_dict(state["base"])
