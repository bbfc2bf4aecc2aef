"""What the CLI does with an exception nobody expected: one sentence for the user, the full traceback in a log file.

The log goes into the run folder being worked on (stages register it when they open one), so it travels with the
run's other files; without a run folder (or when it cannot be written) into the a3 cache folder's `logs/`. Tracebacks
pass through the secret scrubber first: an SDK's exception text may echo a request header.
"""

from __future__ import annotations

import errno
import os
import time
import traceback
from pathlib import Path

from a3cli._paths import user_cache_dir

_run_dir: Path | None = None


def note_run_dir(path: str | os.PathLike[str]) -> None:
    """The run folder this process works in (the latest one opened wins)."""
    global _run_dir
    _run_dir = Path(path)


def current_run_dir() -> Path | None:
    return _run_dir


def _scrub(text: str) -> str:
    try:
        from a3cli.llm._secrets import scrub
    except Exception:  # noqa: BLE001 - a crash while importing must still leave a log
        return text
    return scrub(text)


def write_crash_log(exc: BaseException) -> Path | None:
    """Write `exc`'s traceback to a new log file; its path, or None when no folder could take it."""
    text = _scrub("".join(traceback.format_exception(exc)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folders = ([_run_dir / "logs"] if _run_dir is not None else []) + [user_cache_dir() / "logs"]
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def describe_exception(exc: BaseException) -> str:
    """One sentence about an unexpected exception, without Python class names."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's CUDA OOM subclasses RuntimeError
        return "out of memory"
    if isinstance(exc, OSError):
        what = {
            errno.EACCES: "permission denied", errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the disk",
            errno.EROFS: "the file system is read-only", errno.ENOENT: "no such file or folder",
        }.get(exc.errno or -1, (exc.strerror or str(exc) or "an operating-system error").lower())
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"{what}{where}"
    if isinstance(exc, KeyError):
        return f"an internal lookup failed (missing key {exc.args[0]!r})" if exc.args else "an internal lookup failed"
    detail = " ".join(str(exc).split())[:300]
    return f"an internal error ({_scrub(detail)})" if detail else "an internal error"
