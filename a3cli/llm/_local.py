"""Local causal LMs through transformers, with concurrent requests gathered into batches.

- Requests for one loaded model queue up; a batch takes up to `ModelRef.batch_size` of them, the shortest prompts
  first (similar lengths pad less), left-padded, and runs in the one worker thread that owns all local models, so the
  event loop stays free and models never compete for cores.
- The prompt is the tokenizer's chat template with add_generation_prompt, then the prefill appended verbatim.
- temperature == 0 is greedy. Otherwise each row samples with its own torch.Generator seeded from the request itself,
  so a sample does not depend on which other requests shared its batch.
- Each row stops at eos, at its own `stop` strings, or at its own max_tokens.
- Loaded models are shared in this process per (weights, adapter, dtype, device); the fingerprints are content hashes,
  so a re-trained adapter at the same path is loaded afresh. At most A3_LOCAL_MAX_MODELS (default 2) stay loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from a3cli.errors import A3Error
from a3cli.llm._provider import Completion, Provider, ProviderError, register_provider, request_seed
from a3cli.llm._sdk_errors import short
from a3cli.llm._types import Request, Usage
from a3cli.spec import ModelRef

_log = logging.getLogger(__name__)

_GATHER_S = 0.005  # how long a short batch waits for requests submitted in the same burst

# One thread runs every local model: loading and generation never block the event loop, and two models never fight
# over the same cores.
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="a3-local-lm")
_models: OrderedDict[tuple[str, ...], _Loaded] = OrderedDict()
_models_lock = threading.Lock()


@dataclass
class _Loaded:
    key: tuple[str, ...]
    model: Any
    tokenizer: Any
    device: str
    eos_ids: frozenset[int]
    pad_id: int
    active: int = 0


@dataclass
class _Item:
    request: Request
    future: asyncio.Future[Completion]
    batch_size: int = 1
    ident: dict[str, Any] = field(default_factory=dict)


def _max_models() -> int:
    try:
        return max(1, int(os.environ.get("A3_LOCAL_MAX_MODELS", "2")))
    except ValueError:
        return 2


def _resolved_dtype_device(ref: ModelRef) -> tuple[str, str]:
    from a3cli.assets import pick_device, pick_dtype

    device = pick_device(ref.device)
    return str(pick_dtype(ref.dtype, device)).removeprefix("torch."), device


def local_identity(ref: ModelRef) -> dict[str, Any]:
    """What makes a local model's outputs what they are: weights (and adapter) content fingerprints and the dtype.
    Keys of cached replies and of stored capability measurements are built on it."""
    from a3cli.assets import resolve_local_model, weights_fingerprint

    dtype, _ = _resolved_dtype_device(ref)
    ident: dict[str, Any] = {"weights": weights_fingerprint(resolve_local_model(ref.model, revision=ref.revision)), "dtype": dtype}
    # The device is left out on purpose: CPU and GPU differ only by float noise, and a cache filled on one should
    # serve the other. The dtype changes real outputs, so it is in.
    if ref.adapter:
        ident["adapter"] = weights_fingerprint(resolve_local_model(ref.adapter))
    return ident


def _load(ref: ModelRef, ident: dict[str, Any]) -> _Loaded:
    """Runs in the worker thread."""
    from a3cli.assets import load_causal_lm

    dtype, device = _resolved_dtype_device(ref)
    key = (ident["weights"], ident.get("adapter", ""), dtype, device)
    with _models_lock:
        hit = _models.get(key)
        if hit is not None:
            _models.move_to_end(key)
            return hit
    _log.info("Loading local model %s%s (%s, %s)", ref.model, f" + adapter {ref.adapter}" if ref.adapter else "", dtype, device)
    model, tokenizer = load_causal_lm(ref.model, dtype=dtype, device=device, adapter=ref.adapter, revision=ref.revision)
    eos: set[int] = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            eos.add(source)
        elif isinstance(source, (list, tuple)):
            eos.update(int(x) for x in source)
    loaded = _Loaded(key, model, tokenizer, device, frozenset(eos), int(tokenizer.pad_token_id))
    with _models_lock:
        _models[key] = loaded
        idle = [k for k, m in _models.items() if k != key and m.active == 0]
        while len(_models) > _max_models() and idle:
            _models.pop(idle.pop(0))
    return loaded


def unload_local_models() -> int:
    """Drop every loaded local model not generating right now (e.g. before training); returns how many."""
    with _models_lock:
        idle = [k for k, m in _models.items() if m.active == 0]
        for k in idle:
            del _models[k]
    return len(idle)


def _render(tokenizer: Any, request: Request) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ProviderError("invalid_request", "this local model's tokenizer has no chat template; a3 sends chat messages")
    text = tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in request.messages], tokenize=False, add_generation_prompt=True
    )
    return text + (request.prefill or "")


def _run_batch(loaded: _Loaded, requests: list[Request]) -> list[Completion | ProviderError]:
    """Generate for every request in one padded batch. Runs in the worker thread."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    results: list[Completion | ProviderError | None] = [None] * len(requests)
    rows, prompts = [], []
    for i, request in enumerate(requests):
        try:
            prompts.append(_render(loaded.tokenizer, request))
            rows.append(i)
        except ProviderError as e:
            results[i] = e
        except Exception as e:  # a template that raises on these messages (e.g. it forbids a system turn)
            results[i] = ProviderError("invalid_request", short(f"the chat template failed on these messages: {e}"))
    if rows:
        batch = [requests[i] for i in rows]
        tok = loaded.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
        prompt_len = enc["input_ids"].shape[1]
        max_new = [r.config.max_tokens for r in batch]
        generators = []
        for r in batch:
            if r.config.temperature > 0:
                g = torch.Generator(device=loaded.device)
                g.manual_seed(request_seed(r))
                generators.append(g)
            else:
                generators.append(None)
        config = GenerationConfig(
            max_new_tokens=max(max_new),
            do_sample=False,  # sampling rows are drawn by _RowSampler, which leaves one finite logit for argmax
            num_beams=1,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            eos_token_id=sorted(loaded.eos_ids) or None,
            pad_token_id=loaded.pad_id,
        )
        processors = LogitsProcessorList()
        if any(g is not None for g in generators):
            processors.append(_row_sampler([(r.config.temperature, r.config.top_p, g) for r, g in zip(batch, generators)]))
        stopping = StoppingCriteriaList([_row_stop(tok, prompt_len, max_new, [r.config.stop for r in batch])])
        with torch.inference_mode():
            out = loaded.model.generate(
                **enc, generation_config=config, logits_processor=processors, stopping_criteria=stopping
            )
        input_counts = enc["attention_mask"].sum(dim=1).tolist()
        for j, (i, r) in enumerate(zip(rows, batch)):
            results[i] = _decode_row(loaded, out[j, prompt_len:].tolist()[: max_new[j]], r, int(input_counts[j]))
    return [r for r in results if r is not None]


def _decode_row(loaded: _Loaded, ids: list[int], request: Request, input_tokens: int) -> Completion:
    finish = "length"
    for k, t in enumerate(ids):
        if t in loaded.eos_ids:
            ids, finish = ids[:k], "stop"
            break
    if finish == "length" and len(ids) < request.config.max_tokens:
        finish = "stop"  # the row was stopped early by a stop string; padding follows
        while ids and ids[-1] == loaded.pad_id:
            ids = ids[:-1]
    text = loaded.tokenizer.decode(ids, skip_special_tokens=True)
    cuts = [text.find(s) for s in request.config.stop if s and s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    return Completion(text=text, finish_reason=finish, usage=Usage(input_tokens=input_tokens, output_tokens=len(ids)))


def _row_sampler(rows: list[tuple[float, float, Any]]) -> Any:
    """A logits processor that samples the rows with a generator and leaves greedy rows alone."""
    import torch
    from transformers import LogitsProcessor

    class _RowSampler(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            for i, (temperature, top_p, generator) in enumerate(rows):
                if generator is None:
                    continue
                logits = scores[i].float() / temperature
                if top_p < 1.0:
                    sorted_logits, order = torch.sort(logits, descending=True)
                    probs = sorted_logits.softmax(-1)
                    # drop a token once the tokens ranked above it already reach top_p (the first always stays)
                    sorted_logits[(probs.cumsum(-1) - probs) >= top_p] = float("-inf")
                    logits = torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)
                choice = torch.multinomial(logits.softmax(-1), 1, generator=generator)
                row = torch.full_like(scores[i], float("-inf"))
                row[choice] = 0.0
                scores[i] = row
            return scores

    return _RowSampler()


def _row_stop(tokenizer: Any, prompt_len: int, max_new: list[int], stops: list[list[str]]) -> Any:
    """Per-row stopping: the row's own max_tokens, or one of its stop strings in the newly generated text."""
    import torch
    from transformers import StoppingCriteria

    windows = [max((len(s) for s in row), default=0) + 2 for row in stops]

    class _RowStop(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            generated = input_ids.shape[1] - prompt_len
            done = []
            for i, row in enumerate(stops):
                stop = generated >= max_new[i]
                if not stop and row and generated > 0:
                    start = max(prompt_len, input_ids.shape[1] - windows[i])
                    tail = tokenizer.decode(input_ids[i, start:].tolist(), skip_special_tokens=True)
                    stop = any(s and s in tail for s in row)
                done.append(stop)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return _RowStop()


def _prompt_chars(request: Request) -> int:
    """A cheap stand-in for the prompt's token length (no tokenizer needed): what the batcher sorts by."""
    return sum(len(m.content) for m in request.messages) + len(request.prefill or "")


class _Batcher:
    """Gathers concurrent requests for one loaded model (in one event loop) into batches."""

    def __init__(self) -> None:
        self.pending: deque[tuple[_Item, ModelRef]] = deque()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, request: Request, ident: dict[str, Any]) -> Completion:
        loop = asyncio.get_running_loop()
        item = _Item(request, loop.create_future(), request.model.batch_size, ident)
        self.pending.append((item, request.model))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._drain())
        return await item.future

    def _next_batch(self) -> tuple[list[_Item], ModelRef | None]:
        """The shortest prompts waiting, up to the batch size. Left padding makes a batch as long as its longest
        prompt, so batching similar lengths together cuts the padded positions the model computes (a third of the
        prefill work on a3's probes in arrival order); requests still leave in a fixed order for a fixed set."""
        waiting = [(item, ref) for item, ref in self.pending if not item.future.done()]  # a waiter may be cancelled
        self.pending.clear()
        if not waiting:
            return [], None
        waiting.sort(key=lambda pair: _prompt_chars(pair[0].request))
        limit = min(item.batch_size for item, _ in waiting[: waiting[0][0].batch_size])
        batch = [item for item, _ in waiting[:limit]]
        self.pending.extend(waiting[limit:])
        return batch, waiting[0][1]

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            if len(self.pending) < self.pending[0][0].batch_size:
                await asyncio.sleep(_GATHER_S)
            batch, ref = self._next_batch()
            if not batch or ref is None:
                continue
            results: list[Completion | ProviderError] | None = None
            try:
                loaded = await loop.run_in_executor(_worker, _load, ref, batch[0].ident)
                loaded.active += 1
                try:
                    results = await loop.run_in_executor(_worker, _run_batch, loaded, [it.request for it in batch])
                finally:
                    loaded.active -= 1
            except A3Error as e:  # model not found, unavailable, missing package: the same for every row
                results = [ProviderError("invalid_request", short(str(e)))] * len(batch)
            except Exception as e:
                from a3cli._crashlog import describe_exception

                _log.warning("local generation failed: %s", short(describe_exception(e)))
                results = [ProviderError("other", short(f"local generation failed: {describe_exception(e)}"))] * len(batch)
            for item, result in zip(batch, results):
                if item.future.done():
                    continue
                if isinstance(result, ProviderError):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)


@register_provider("local")
class LocalProvider(Provider):
    enforce_timeout = False  # a timed-out row cannot be taken out of a running batch; the batch always finishes

    def __init__(self) -> None:
        self._identities: dict[str, dict[str, Any]] = {}
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], _Batcher]] = (
            weakref.WeakKeyDictionary()
        )

    def identity(self, ref: ModelRef) -> dict[str, Any]:
        ident = local_identity(ref)
        self._identities[ref.model_dump_json()] = ident  # generate() reuses the fingerprints of this batch
        return ident

    def max_in_flight(self, ref: ModelRef) -> int:
        # Waiting requests cost nothing here, and the more the batcher sees, the better it groups them by length.
        return max(ref.concurrency, 64 * ref.batch_size)

    def limiter_key(self, ref: ModelRef) -> tuple[Any, ...]:
        return (self.name, ref.model, ref.revision, ref.adapter, ref.dtype, ref.device, self.max_in_flight(ref))

    async def generate(self, request: Request) -> Completion:
        ref = request.model
        ident = self._identities.get(ref.model_dump_json())
        if ident is None:
            try:
                ident = await asyncio.to_thread(self.identity, ref)
            except (A3Error, OSError) as e:
                raise ProviderError("invalid_request", short(str(e))) from None
        dtype, device = _resolved_dtype_device(ref)
        key = (ident["weights"], ident.get("adapter", ""), dtype, device)
        batchers = self._batchers.setdefault(asyncio.get_running_loop(), {})
        batcher = batchers.get(key)
        if batcher is None:
            batcher = batchers[key] = _Batcher()
        return await batcher.submit(request, ident)

    async def aclose(self) -> None:
        self._batchers.pop(asyncio.get_running_loop(), None)
