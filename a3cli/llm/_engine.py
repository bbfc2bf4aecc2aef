"""The one way a3 calls models: cache, de-duplication, concurrency limits, timeouts, retries and accounting.

    engine = Engine()                                   # cache at $A3_CACHE or user_cache_dir()/llm-cache.sqlite
    replies = await engine.generate(requests, progress="judging")   # same order as requests
    replies = engine.generate_sync(requests)            # from synchronous code

A call that finally fails comes back as a Response with `error` set (never an empty or "safe" reply). Every completed
reply is written to the cache as soon as it arrives, so a run killed mid-batch repeats none of them when restarted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import random
import time
import weakref
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from a3cli._progress import Progress, progress_enabled
from a3cli.errors import A3Error
from a3cli.llm._cache import CACHE_MODES, Cache, CacheMode, key_for, target_json
from a3cli.llm._outcomes import OutcomeMeter
from a3cli.llm._provider import Completion, Provider, ProviderError, provider_class
from a3cli.llm._sdk_errors import short
from a3cli.llm._sync import register_engine, run_sync
from a3cli.llm._types import CallError, Request, Response
from a3cli.llm._usage import UsageMeter, UsageReport
from a3cli.spec import ModelRef

_log = logging.getLogger("a3cli.llm")


class _Limiter:
    """A semaphore whose waiters are served retries first, then in arrival order, and whose size adapts to the server.

    With a plain FIFO semaphore a request that failed early queues its retry behind every request not yet started,
    so retries (and their own failures) pile up at the end of a batch and stretch its tail.

    A timeout halves the number of requests in flight (down to 1): a slow server that does not cancel abandoned
    generations otherwise gets each timed-out request again on top of the ones still running. Each run of as many
    successes as the current limit raises it by one again, up to the configured concurrency.
    """

    def __init__(self, slots: int, name: str = ""):
        self.max = slots
        self.limit = slots
        self.name = name
        self._active = 0
        self._successes = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def acquire(self, retry: bool) -> None:
        if self._active < self.limit and not self._waiters:
            self._active += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (0 if retry else 1, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        self._active -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._active < self.limit:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self._active += 1
                fut.set_result(None)  # the slot goes straight to the waiter

    def timed_out(self) -> None:
        self._successes = 0
        if self.limit > 1:
            old, self.limit = self.limit, max(1, self.limit // 2)
            _log.warning("%s: a request timed out; requests in flight %d -> %d until the server keeps up", self.name, old, self.limit)

    def succeeded(self) -> None:
        if self.limit >= self.max:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()


# Failures that say nothing about the request itself: the same call may well succeed when made again, so a stage that
# met one is incomplete rather than done. (A content-filter stop or an invalid request is the request's own outcome.)
TRANSIENT_FAILURES: frozenset[str] = frozenset({"timeout", "rate_limit", "server", "connection", "bad_response", "auth", "other"})


@dataclass(frozen=True)
class FailedCall:
    """One call that finally failed (after its retries): for the stage that made it to report and stop."""

    role: str
    provider: str
    model: str
    error: CallError

    @property
    def transient(self) -> bool:
        return self.error.kind in TRANSIENT_FAILURES


@dataclass
class _LoopState:
    """What belongs to one event loop: semaphores and in-flight calls cannot cross loops."""

    limiters: dict[tuple[Any, ...], _Limiter] = field(default_factory=dict)
    inflight: dict[str, asyncio.Task[Response]] = field(default_factory=dict)
    pending_writes: list[tuple[str, str, Response, str, str]] = field(default_factory=list)
    flush_scheduled: bool = False


class Engine:
    """Runs batches of Requests. Thread-safe; usable from several event loops (one per thread) at once.

    cache: a Cache, a path to the SQLite file, or None for the default location. mode: "normal" reads and writes the
    cache, "refresh" writes but does not read, "no_cache" does neither (no file is opened).
    prices: overrides of USD per million (input, output) tokens by model-id prefix, for the cost estimate.
    backoff_base_s/backoff_max_s: exponential back-off with full jitter between retries when the server gives no
    Retry-After. max_retry_after_s: a Retry-After longer than this fails the call instead of stalling the run.
    """

    def __init__(
        self,
        cache: Cache | str | os.PathLike[str] | None = None,
        mode: CacheMode = "normal",
        *,
        prices: Mapping[str, tuple[float, float]] | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 300.0,
    ):
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode must be one of {', '.join(CACHE_MODES)}, not {mode!r}")
        self.mode: CacheMode = mode
        self.cache: Cache | None = None if mode == "no_cache" else cache if isinstance(cache, Cache) else Cache(cache)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self._meter = UsageMeter(prices)
        self._failed: list[FailedCall] = []
        self.outcomes = OutcomeMeter()  # re-asks, fallbacks and unusable answers per role (recorded by the callers)
        self.retries = 0  # attempts made again after a retryable failure, over the engine's life (shown in progress)
        self._providers: dict[str, Provider] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        register_engine(self)  # run_sync closes this engine's clients before each of its loops ends

    def __repr__(self) -> str:
        return f"Engine(cache={self.cache!r}, mode={self.mode!r})"

    # ------------------------------------------------------------------------------------------------ public

    @property
    def usage(self) -> UsageReport:
        """Tokens, calls, cache hits, errors and estimated cost so far, per role and in total."""
        return self._meter.report()

    def failed_calls(self, since: int = 0) -> list[FailedCall]:
        """Calls that finally failed, in the order they did, from index `since` (a count taken earlier) on."""
        return self._failed[since:]

    def provider(self, name: str) -> Provider:
        prov = self._providers.get(name)
        if prov is None:
            prov = self._providers[name] = provider_class(name)()
        return prov

    def quirks(self, ref: ModelRef) -> list[str]:
        """How `ref`'s provider departs from its settings (a3cli.llm.Provider.quirks), including what the provider
        learned from its server's answers in this process."""
        return self.provider(ref.provider).quirks(ref)

    async def complete(self, request: Request) -> Response:
        return (await self.generate([request]))[0]

    async def generate(self, requests: Iterable[Request], *, progress: str | None = None) -> list[Response]:
        """One Response per request, in order. Identical requests are made once; failures come back as errors."""
        requests = list(requests)
        results: list[Response | None] = [None] * len(requests)
        if not requests:
            return []
        state = self._state()
        targets = await self._targets(requests)

        # key -> indices of the requests that share it; failures to even build a key are answered at once
        groups: dict[str, list[int]] = {}
        first: dict[str, tuple[Request, str, bool]] = {}
        for i, request in enumerate(requests):
            target = targets[id(request.model)]
            if isinstance(target, ProviderError):
                results[i] = _error_response(target, attempts=0)
                self._meter.record(request.role, request.model.provider, request.model.model, results[i])
                self._failed.append(FailedCall(request.role, request.model.provider, request.model.model, results[i].error))  # type: ignore[arg-type]
                continue
            key, payload = key_for(request, target[0])
            indices = groups.get(key)
            if indices is None:
                groups[key] = [i]
                first[key] = (request, payload, target[1])
            else:
                indices.append(i)

        hits = {}
        if self.cache is not None and self.mode == "normal":
            hits = self.cache.get_many([k for k, (_, _, cacheable) in first.items() if cacheable])

        with self._progress(progress, len(requests)) as bar:
            advance = bar.advance if bar is not None else None
            if advance:
                advance(sum(r is not None for r in results))  # requests that failed before any call
            waits: list[tuple[str, asyncio.Future[Response]]] = []
            hits_by_role: dict[str, int] = {}
            for key, indices in groups.items():
                request, payload, cacheable = first[key]
                hit = hits.get(key)
                if hit is not None:
                    hits_by_role[request.role] = hits_by_role.get(request.role, 0) + 1
                    _fill(results, indices, hit)
                    if advance:
                        advance(len(indices))
                    continue
                task = state.inflight.get(key)
                if task is None:
                    task = asyncio.ensure_future(self._call(state, request, key, payload, cacheable))
                    state.inflight[key] = task
                    task.add_done_callback(lambda _t, k=key: state.inflight.pop(k, None))
                if advance:
                    task.add_done_callback(lambda _t, n=len(indices): advance(n))
                waits.append((key, task))
            for role, n in hits_by_role.items():
                self._meter.record_hits(role, n)
            try:
                # shield: cancelling this batch must not cancel a call that a concurrent batch shares; unfinished calls
                # run on and still land in the cache.
                done = await asyncio.gather(*(asyncio.shield(t) for _, t in waits))
            finally:
                self._flush(state)
        for (key, _), response in zip(waits, done):
            _fill(results, groups[key], response)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def generate_sync(self, requests: Iterable[Request], *, progress: str | None = None) -> list[Response]:
        """`generate` for synchronous code. Runs its own event loop (in a helper thread if one is already running)."""
        requests = list(requests)
        return run_sync(self.generate(requests, progress=progress))

    async def aclose(self) -> None:
        """Flush cache writes and close the SDK clients that belong to the running loop."""
        loop = asyncio.get_running_loop()
        state = self._loops.pop(loop, None)
        if state is not None:
            self._flush(state)
        for prov in list(self._providers.values()):
            await prov.aclose()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ internals

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        return state

    async def _targets(self, requests: list[Request]) -> dict[int, tuple[str, bool] | ProviderError]:
        """For each distinct ModelRef: its half of the cache key and whether its replies may be cached. Computed once
        per batch, off the loop for local models (fingerprinting may hash weight files)."""
        refs: dict[int, ModelRef] = {}
        for r in requests:
            refs.setdefault(id(r.model), r.model)

        def one(ref: ModelRef) -> tuple[str, bool] | ProviderError:
            try:
                prov = self.provider(ref.provider)
                return target_json(ref, prov.identity(ref)), prov.cacheable
            except (A3Error, OSError, KeyError) as e:
                return ProviderError("invalid_request", short(str(e)))

        if all(ref.provider != "local" for ref in refs.values()):
            return {i: one(ref) for i, ref in refs.items()}  # cheap: no file I/O
        values = await asyncio.gather(*(asyncio.to_thread(one, ref) for ref in refs.values()))
        return dict(zip(refs, values))

    def _limiter(self, state: _LoopState, prov: Provider, ref: ModelRef) -> _Limiter:
        key = prov.limiter_key(ref)
        limiter = state.limiters.get(key)
        if limiter is None:
            limiter = state.limiters[key] = _Limiter(prov.max_in_flight(ref), name=f"{ref.provider} {ref.model}")
        return limiter

    async def _call(self, state: _LoopState, request: Request, key: str, payload: str, cacheable: bool) -> Response:
        ref = request.model
        prov = self.provider(ref.provider)
        limiter = self._limiter(state, prov, ref)
        start = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            error: ProviderError | None = None
            completion: Completion | None = None
            await limiter.acquire(retry=attempts > 1)
            try:
                if prov.enforce_timeout:
                    async with asyncio.timeout(ref.timeout_s):
                        completion = await prov.generate(request)
                else:
                    completion = await prov.generate(request)
            except ProviderError as e:
                error = e
            except TimeoutError:
                error = ProviderError("timeout", f"no reply within {ref.timeout_s:g} s")
            except Exception as e:  # a bug or an SDK surprise: report it on this call, and loudly in the log
                error = ProviderError("other", short(f"unexpected failure in the {ref.provider} provider: {e}"))
                _log.warning("%s %s: unexpected %s", ref.provider, ref.model, error.message)
            finally:
                limiter.release()
            if error is None:
                limiter.succeeded()
                break
            if error.kind == "timeout":
                limiter.timed_out()
            give_up = not error.retryable or attempts > ref.max_retries
            if not give_up and error.retry_after is not None and error.retry_after > self.max_retry_after_s:
                error.message += f" (the server asked to wait {error.retry_after:.0f} s, over the {self.max_retry_after_s:.0f} s limit)"
                give_up = True
            if give_up:
                response = _error_response(error, attempts=attempts, latency=time.monotonic() - start)
                _log.info("%s %s failed after %d attempt(s): %s: %s", ref.provider, ref.model, attempts, error.kind, error.message)
                self._meter.record(request.role, ref.provider, ref.model, response)
                self._failed.append(FailedCall(request.role, ref.provider, ref.model, response.error))  # type: ignore[arg-type]
                return response
            delay = self._delay(error, attempts)
            self.retries += 1
            _log.debug("%s %s: %s; retry %d/%d in %.2f s", ref.provider, ref.model, error.kind, attempts, ref.max_retries, delay)
            await asyncio.sleep(delay)  # outside the limiter: a waiting request holds no slot
        assert completion is not None
        response = Response(
            text=completion.text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_s=time.monotonic() - start,
        )
        self._meter.record(request.role, ref.provider, ref.model, response)
        if cacheable and self.cache is not None:
            state.pending_writes.append((key, payload, response, ref.provider, ref.model))
            if not state.flush_scheduled:
                # Completions that land in the same loop iteration share one transaction.
                state.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush, state)
        return response

    def _delay(self, error: ProviderError, attempts: int) -> float:
        if error.retry_after is not None:
            return error.retry_after
        # Exponential back-off with full jitter (uniform between 0 and the exponential cap).
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))

    def _flush(self, state: _LoopState) -> None:
        state.flush_scheduled = False
        rows, state.pending_writes = state.pending_writes, []
        if not rows or self.cache is None:
            return
        try:
            self.cache.put_many(rows)
        except A3Error as e:
            # The replies are still returned; only the saving failed, and the next run will make these calls again.
            _log.warning("Could not write %d replies to the cache: %s", len(rows), e)

    def _progress(self, description: str | None, total: int) -> AbstractContextManager[Any]:
        if description is None or not progress_enabled():
            return nullcontext(None)
        return Progress(description, total, retries=lambda: self.retries)


def _fill(results: list[Response | None], indices: list[int], response: Response) -> None:
    results[indices[0]] = response
    for i in indices[1:]:
        results[i] = response.model_copy(deep=True)


def _error_response(error: ProviderError, *, attempts: int, latency: float = 0.0) -> Response:
    partial = error.partial
    return Response(
        text=partial.text if partial else None,
        finish_reason=partial.finish_reason if partial else None,
        usage=partial.usage if partial else Response().usage,
        latency_s=latency,
        error=CallError(kind=error.kind, message=error.message, status=error.status, attempts=attempts),
    )
