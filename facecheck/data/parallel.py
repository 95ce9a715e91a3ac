"""Per-picture work of a batch spread over the cores: decoding, JPEG normalisation, resizing.

Pillow releases the GIL while it decodes, encodes and resamples, so threads run these on every core. A
4000 px photo costs about 150 ms of such work on one core before its face is even searched
(benchmarks/scoring_speed.py), while the network judges its one face crop in a few milliseconds: one picture
at a time, a batch of large photos kept one core busy and the other idle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from facecheck.cpu import available_cores

Item = TypeVar("Item")
Result = TypeVar("Result")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    # A forked child (a DataLoader worker) has the pool object but none of its threads: it makes its own.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool_in_child)


def map_pictures(function: Callable[[Item], Result], items: Sequence[Item]) -> list[Result]:
    """``[function(item) for item in items]``, run on every usable core when there are several items.

    ``function`` must not call :func:`map_pictures` itself (its tasks would wait for a full pool). An exception
    of ``function`` is raised here, as the plain loop would raise it.
    """
    cores = available_cores()
    if len(items) < 2 or cores < 2:
        return [function(item) for item in items]
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="facecheck-pictures")
        pool = _pool
    return list(pool.map(function, items))
