"""Progress of one long step (a batch of model calls, judging, a training run, lm-eval) on stderr.

On a terminal: a rich progress bar. Anywhere else (a CI log, a pipe): a plain line every A3_PROGRESS_EVERY seconds
(default 20) and one at the end, so a log shows the run is alive and how far it is even while nothing completes:

    a3 progress: generate round 1: target 40/120 (33%), 2.10/s, ETA 38 s, 3 retries, elapsed 19 s

A3_NO_PROGRESS=1 turns both off.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Self, TextIO

DEFAULT_EVERY_S = 20.0


def _every_s() -> float:
    try:
        return max(0.1, float(os.environ.get("A3_PROGRESS_EVERY", DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def _secs(s: float) -> str:
    whole = round(s)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60:02d} s"


class Progress:
    """`with Progress("train", total=183) as p: p.advance(1, loss=0.71)`. Thread-safe."""

    def __init__(
        self,
        description: str,
        total: int,
        *,
        retries: Callable[[], int] | None = None,
        stream: TextIO | None = None,
        every_s: float | None = None,
        terminal: bool | None = None,
    ):
        self.description = description
        self.total = max(0, int(total))
        self.done = 0
        self.fields: dict[str, Any] = {}
        self._retries = retries
        self._retries0 = retries() if retries else 0
        self._stream = stream or sys.stderr
        self._every = every_s if every_s is not None else _every_s()
        self._terminal = self._stream.isatty() if terminal is None else terminal
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None
        self._t0 = 0.0

    # ------------------------------------------------------------------------------------------------ updates

    def advance(self, n: int = 1, **fields: Any) -> None:
        with self._lock:
            self.done = min(self.total, self.done + n) if self.total else self.done + n
            self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, extra=self._extra())

    def _extra(self) -> str:
        with self._lock:
            return ", ".join(f"{k} {v}" for k, v in self.fields.items())

    def retries(self) -> int:
        return (self._retries() - self._retries0) if self._retries else 0

    def line(self) -> str:
        """The plain progress line as it stands now."""
        with self._lock:
            done, total, fields = self.done, self.total, dict(self.fields)
        elapsed = time.monotonic() - self._t0
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{done}/{total}" + (f" ({done / total:.0%})" if total else "")]
        parts.append(f"{rate:.2f}/s")
        if total and done < total:
            parts.append(f"ETA {_secs((total - done) / rate)}" if rate > 0 else "ETA unknown (nothing finished yet)")
        if self._retries is not None:
            parts.append(f"{self.retries()} retries")
        parts += [f"{k} {v}" for k, v in fields.items()]
        parts.append(f"elapsed {_secs(elapsed)}")
        return f"a3 progress: {self.description} " + ", ".join(parts)

    # ------------------------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self._t0 = time.monotonic()
        if self._terminal:
            self._start_bar()
        else:
            self._thread = threading.Thread(target=self._tick, name="a3-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._print()

    def _tick(self) -> None:
        while not self._stop.wait(self._every):
            self._print()

    def _print(self) -> None:
        try:
            print(self.line(), file=self._stream, flush=True)
        except (OSError, ValueError):  # a closed stream must not break the work being reported on
            pass

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=self._stream),
            transient=False,
        )
        self._task = self._bar.add_task(self.description, total=self.total, extra="")
        self._bar.start()

    def set_fields(self, **fields: Any) -> None:
        """Values shown beside the count (loss, tokens/s), without advancing."""
        with self._lock:
            self.fields.update(fields)
        if self._bar is not None:
            self._bar.update(self._task, extra=self._extra())


def progress_enabled() -> bool:
    return os.environ.get("A3_NO_PROGRESS") != "1"
