"""Content fingerprints of model and adapter folders, with a per-file hash memo so unchanged files are never re-read."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from a3cli._io import write_json
from a3cli._paths import user_cache_dir

_log = logging.getLogger(__name__)

_MEMO_NAME = "file-hashes.json"
_MEMO_MAX_ENTRIES = 4000
_CHUNK = 8 * 1024 * 1024

# What defines a model's behaviour: weights, configs, tokenizer files. Trainer state (optimizer, rng, training_args.bin,
# which pickles the output path) and READMEs are left out so the fingerprint depends on content, not on where it was trained.
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".gguf", ".pt", ".pth"}
_META_NAMES = {
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
}
_TRAINER_FILES = {"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json"}


def _memo_path() -> Path:
    return user_cache_dir() / _MEMO_NAME


def _load_memo() -> dict[str, dict]:
    try:
        data = json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a missing or corrupt memo only costs a re-hash
    return data if isinstance(data, dict) else {}


def _save_memo(memo: dict[str, dict]) -> None:
    if len(memo) > _MEMO_MAX_ENTRIES:
        memo = dict(list(memo.items())[-_MEMO_MAX_ENTRIES:])
    try:
        write_json(_memo_path(), memo)
    except OSError as e:  # the memo is an optimisation; a read-only cache must not break fingerprinting
        _log.warning("Could not update the file-hash memo %s: %s", _memo_path(), e)


def _stat_key(st: os.stat_result) -> dict:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


# peft keeps these as sets and writes them in set order, which changes with Python's per-process string hashing: the
# same adapter saved by two processes would otherwise get two fingerprints (and a resumed run new cache keys).
_UNORDERED_ADAPTER_FIELDS = ("target_modules", "modules_to_save", "exclude_modules")


def _adapter_config_digest(path: Path) -> str | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    for field in _UNORDERED_ADAPTER_FIELDS:
        value = config.get(field)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[field] = sorted(value)
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _hash_file(path: Path) -> str:
    if path.name == "adapter_config.json":
        digest = _adapter_config_digest(path)
        if digest is not None:
            return digest
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _memo_hash(path: Path, memo: dict[str, dict]) -> tuple[str, bool]:
    """(sha256, whether the memo changed). Keyed by absolute path; valid while size, mtime_ns and inode are unchanged."""
    path = path.resolve()
    if path.name == "adapter_config.json":
        return _hash_file(path), False  # tiny, and hashed in a canonical form older memo entries do not have
    st = path.stat()
    key = str(path)
    entry = memo.get(key)
    if entry and {k: entry.get(k) for k in ("size", "mtime_ns", "ino")} == _stat_key(st):
        return entry["sha256"], False
    digest = _hash_file(path)
    memo.pop(key, None)  # re-insert at the end: the memo is trimmed oldest-first
    memo[key] = {**_stat_key(st), "sha256": digest}
    return digest, True


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of one file's content, memoised in user_cache_dir()/file-hashes.json."""
    memo = _load_memo()
    digest, changed = _memo_hash(Path(path), memo)
    if changed:
        _save_memo(memo)
    return digest


def _fingerprinted_files(folder: Path) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") or part.startswith("checkpoint-") for part in rel.parts):
            continue
        if not p.is_file() or p.name in _TRAINER_FILES or p.name.startswith("rng_state"):
            continue
        if p.suffix in _WEIGHT_SUFFIXES or p.name in _META_NAMES:
            files.append(p)
    return files


def weights_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over the weight, config and tokenizer files of a model or adapter folder (or over one weights file).

    Depends on file contents and their names relative to the folder, not on where the folder is.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"No model or adapter at {root}")
    memo = _load_memo()
    changed = False
    outer = hashlib.sha256(b"a3-weights-fingerprint-v1\n")
    files = [root] if root.is_file() else _fingerprinted_files(root)
    if not files:
        raise FileNotFoundError(f"{root} holds no weight, config or tokenizer files to fingerprint")
    for f in files:
        digest, c = _memo_hash(f, memo)
        changed |= c
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        outer.update(f"{rel}\0{digest}\n".encode())
    if changed:
        _save_memo(memo)
    return outer.hexdigest()
