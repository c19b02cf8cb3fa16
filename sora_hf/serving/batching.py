"""Dynamic batching: concurrent requests share one pipeline call.

Each request is split into items (one per input text or question); the items wait in a bounded FIFO. One worker
task takes up to `max_batch_size` items, waiting at most `max_wait_ms` after the first one for more to arrive,
groups them by request parameters (items with different `top_k` cannot share a call), and runs the model function
once per group in a single background thread, so the event loop keeps accepting and answering requests meanwhile.

A failing batched call is retried one item at a time, so one bad item fails only its own request. `stop()` refuses
new items and returns once every queued item has been answered: graceful shutdown loses no accepted request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError

logger = logging.getLogger(__name__)

# run_batch(items, parameters) -> one output per item, in order
BatchFunction = Callable[[list[Any], dict[str, Any]], Sequence[Any]]


@dataclass
class _Pending:
    item: Any
    parameters: dict[str, Any]
    key: str
    future: asyncio.Future = field(repr=False)


class BatchObserver:
    """Hooks for metrics; the default does nothing."""

    def batch_done(self, size: int, seconds: float) -> None: ...

    def item_failed(self, error: BaseException) -> None: ...


class DynamicBatcher:
    """Collects items from concurrent requests into batches for `run_batch`.

    Args:
        run_batch: called in a worker thread with a list of items sharing the same parameters; returns one output
            per item. It is never called concurrently with itself (models are not assumed thread-safe, and on CPU
            one call already uses every intra-op thread).
        max_batch_size: the most items per call; 1 turns batching off.
        max_wait_ms: how long the first item of a batch may wait for others. 0 takes what is queued right now.
        max_queue_size: the most items waiting; a request that would overflow it is refused whole with a 503.
    """

    def __init__(
        self,
        run_batch: BatchFunction,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue_size: int = 1024,
        observer: BatchObserver | None = None,
    ) -> None:
        for name, value in (("max_batch_size", max_batch_size), ("max_queue_size", max_queue_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue_size = max_queue_size
        self.observer = observer or BatchObserver()
        self._pending: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._stopping

    def start(self) -> None:
        """Start the worker on the running event loop."""
        if self._worker is not None:
            raise RuntimeError("the batcher is already started")
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sora-serving-batch")
        self._stopping = False
        self._worker = asyncio.get_running_loop().create_task(self._work(), name="sora-serving-batcher")

    async def stop(self) -> None:
        """Refuse new items, answer every queued one, then stop the worker and its thread."""
        if self._worker is None:
            return
        self._stopping = True
        self._wakeup.set()
        await self._worker
        self._worker = None
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ requests

    async def submit(self, items: list[Any], parameters: dict[str, Any] | None = None) -> list[Any]:
        """Queue `items` (all or none) and wait for their outputs, in order.

        Raises RequestError(503) when the server is stopping or the queue is full; re-raises an item's own error.
        """
        if self._worker is None or self._stopping:
            raise RequestError(503, "the server is shutting down and takes no new requests", kind="shutting_down")
        if len(self._pending) + len(items) > self.max_queue_size:
            raise RequestError(
                503,
                f"the queue is full ({len(self._pending)} items waiting, max_queue_size={self.max_queue_size}); "
                "retry later",
                kind="queue_full",
            )
        parameters = parameters or {}
        key = json.dumps(parameters, sort_keys=True, default=str)
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            future = loop.create_future()
            self._pending.append(_Pending(item, parameters, key, future))
            futures.append(future)
        self._wakeup.set()
        # return_exceptions: wait for every item, so that no failed sibling is left with an unread exception
        outputs = await asyncio.gather(*futures, return_exceptions=True)
        for output in outputs:
            if isinstance(output, BaseException):
                raise output
        return list(outputs)

    # ------------------------------------------------------------------ worker

    async def _work(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            groups: dict[str, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.key, []).append(pending)
            for group in groups.values():
                await self._run_group(group)

    async def _next_batch(self) -> list[_Pending] | None:
        """Wait for a first item, then up to `max_wait_s` for the batch to fill; None once stopped and drained."""
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._stopping:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch_size and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch = []
        while self._pending and len(batch) < self.max_batch_size:
            pending = self._pending.popleft()
            if not pending.future.done():  # a client that went away cancels its futures: skip its items
                batch.append(pending)
        return batch

    async def _run_group(self, group: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        items, parameters = [p.item for p in group], group[0].parameters
        start = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._call, items, parameters)
        except Exception as error:  # noqa: BLE001 - any failure of the shared call: isolate the bad item
            if len(group) == 1:
                self._fail(group[0], error)
                return
            logger.warning("batched call of %d items failed (%s); retrying one by one", len(group), error)
            for pending in group:
                await self._run_group([pending])
            return
        self.observer.batch_done(len(group), time.perf_counter() - start)
        for pending, output in zip(group, outputs, strict=True):
            if not pending.future.done():
                pending.future.set_result(output)

    def _call(self, items: list[Any], parameters: dict[str, Any]) -> Sequence[Any]:
        outputs = self.run_batch(items, parameters)
        if len(outputs) != len(items):
            raise RuntimeError(f"the model function returned {len(outputs)} outputs for {len(items)} inputs")
        return outputs

    def _fail(self, pending: _Pending, error: BaseException) -> None:
        self.observer.item_failed(error)
        if not pending.future.done():
            pending.future.set_exception(error)
