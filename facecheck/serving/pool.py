"""Bounded worker pools: CPU work off the event loop, a flood answered with quick 503s.

Decoding and inference each get their own pool, so a large image being
decoded never holds up ``/health`` (the event loop stays free) nor the
inferences of other requests beyond the pool's size.
"""

from __future__ import annotations

import asyncio
import copy
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from facecheck.serving.errors import ApiError

T = TypeVar("T")


class WorkerPool:
    """At most ``size`` jobs at once (in threads), at most ``queue_limit`` waiting, each within ``timeout_s``."""

    def __init__(self, what: str, size: int, queue_limit: int, timeout_s: float) -> None:
        self.what, self.size, self.queue_limit, self.timeout_s = what, size, queue_limit, timeout_s
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"facecheck-{what}")
        self.slots = asyncio.Semaphore(size)
        self.waiting = 0

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        if self.slots.locked() and self.waiting >= self.queue_limit:
            raise ApiError(503, "busy", "too many requests waiting; retry shortly")
        self.waiting += 1
        try:
            try:
                await asyncio.wait_for(self.slots.acquire(), timeout=self.timeout_s)
            except TimeoutError:
                raise ApiError(503, "busy", "no worker became free in time; retry shortly") from None
        finally:
            self.waiting -= 1
        # A thread cannot be cancelled: its slot is freed when it really ends, not at the timeout,
        # so timed-out jobs still count against the pool.
        future = asyncio.get_running_loop().run_in_executor(self.executor, function, *args)
        future.add_done_callback(lambda _future: self.slots.release())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=self.timeout_s)
        except TimeoutError:
            raise ApiError(504, "timeout", f"{self.what} took longer than {self.timeout_s:g} s") from None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class ModelCopies:
    """Private copies of a model, made on first need, at most ``limit`` of them, lent one per job.

    Grad-CAM hooks the model's layers: a copy keeps those hooks away from
    predictions running on the shared model in other threads, and a few
    copies let several explanations run at once instead of behind one lock.
    """

    def __init__(self, model: Any, limit: int) -> None:
        self.model, self.limit = model, limit
        self.made = 0
        self._free: queue.LifoQueue[Any] = queue.LifoQueue()
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        try:
            model = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self.made < self.limit
                self.made += make
            model = copy.deepcopy(self.model) if make else self._free.get()
        try:
            yield model
        finally:
            self._free.put(model)
