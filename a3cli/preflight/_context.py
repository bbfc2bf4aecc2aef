"""Does the seed fit the target's context window? Answered from the model folder's config and tokenizer files, without
loading weights: a prompt far past the window otherwise costs minutes of model loading and tokenising before the
model fails on it (or silently truncates it)."""

from __future__ import annotations

import json
from pathlib import Path

from a3cli.errors import SpecError
from a3cli.spec import Spec

_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx", "max_sequence_length")
_PER_MESSAGE = 8  # chat-template tokens around each turn (role markers, separators): a generous allowance
_NO_LIMIT = 10_000_000  # tokenizers store "no limit" as a huge model_max_length


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def context_window(folder: Path) -> tuple[int, str] | None:
    """(tokens, where it was read) from config.json (or its text_config) and tokenizer_config.json; None if unknown."""
    found: list[tuple[int, str]] = []
    config = _json(folder / "config.json")
    for section, prefix in ((config, ""), (config.get("text_config") or {}, "text_config.")):
        for key in _WINDOW_KEYS:
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                found.append((value, f"config.json {prefix}{key}"))
                break
    limit = _json(folder / "tokenizer_config.json").get("model_max_length")
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and 0 < limit < _NO_LIMIT:
        found.append((int(limit), "tokenizer_config.json model_max_length"))
    return min(found) if found else None


def count_tokens(folder: Path, texts: list[str]) -> list[int] | None:
    """Token counts with the folder's fast tokenizer (tokenizer.json); None when it has none."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception:  # noqa: BLE001 - an unreadable tokenizer is the loader's to report, with its own message
        return None
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def check_seed_fits(spec: Spec, folder: Path, label: str) -> None:
    """Raise SpecError (exit 2) when the seed plus `target.generate.max_tokens` exceeds the target's context window."""
    window = context_window(folder)
    if window is None:
        return
    limit, source = window
    texts = [m.content for m in spec.seed.messages()] + ([spec.seed.prefill] if spec.seed.prefill else [])
    counts = count_tokens(folder, texts)
    if counts is None:
        return
    prompt = sum(counts) + _PER_MESSAGE * len(texts)
    new = spec.target.generate.max_tokens
    if prompt + new > limit:
        where = "seed.conversation" if spec.seed.conversation is not None else "seed.prompt"
        raise SpecError(
            f"{where}: the seed is about {prompt:,} tokens (counted with the target's tokenizer); with up to {new:,} new "
            f"tokens (target.generate.max_tokens) it does not fit the context window of {label}, {limit:,} tokens "
            f"({source}). Shorten the seed or lower target.generate.max_tokens"
        )
