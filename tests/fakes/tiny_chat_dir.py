"""a3's tiny random-weight chat model (a3cli.train.tiny_chat_model) saved as a local model folder."""

from __future__ import annotations

from pathlib import Path


def save_tiny_chat_model(folder: Path, seed: int = 0) -> Path:
    from a3cli.train import tiny_chat_model

    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = tiny_chat_model(seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
