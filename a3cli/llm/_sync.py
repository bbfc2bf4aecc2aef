"""Running a3's async model calls from synchronous code, and leaving nothing open behind.

Each `run_sync` call runs its coroutine in a fresh event loop (in a worker thread when a loop is already running).
SDK clients are bound to the loop that opened them, so before that loop closes every live Engine closes the clients it
opened on it: otherwise aiohttp warns "Unclosed client session" once per stage.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class _LoopCloser(Protocol):
    async def aclose(self) -> None: ...


# Engines register here when made; weak, so an engine nobody holds is not kept alive by it.
_ENGINES: weakref.WeakSet[Any] = weakref.WeakSet()


def register_engine(engine: _LoopCloser) -> None:
    _ENGINES.add(engine)


async def close_loop_resources() -> None:
    """Flush and close what every live Engine opened on the running loop (SDK clients, pending cache writes)."""
    for engine in list(_ENGINES):
        await engine.aclose()


async def _run_and_close(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return await coro
    finally:
        await close_loop_resources()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, also when called inside a running event loop (then in a worker thread).

    `asyncio.run` is called outside any `except` block on purpose: an exception raised inside it would otherwise get
    "RuntimeError: no running event loop" as its context, and error messages that follow the chain to its root (a
    refused connection) would report that instead of the real cause.
    """
    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:
        return asyncio.run(_run_and_close(coro))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _run_and_close(coro)).result()
