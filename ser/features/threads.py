"""The threads behind `ser.features.logmel`: per-thread reusable buffers and one pool of helper threads.

`logmel` spreads a batch's chunks over the calling thread and `helper_pool`'s threads; each
thread reuses its own `WORKSPACE` buffers between calls. A forked child starts a fresh pool.

    out = WORKSPACE.array("power", (2, rows), np.float32)
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Workspace(threading.local):
    """Per-thread buffers, reused across calls (fresh large arrays cost page faults every call)."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}
        self.views: dict[str, tuple[tuple[int, ...], type, np.ndarray]] = {}  # the last view of each

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-contiguous `shape` view of this thread's buffer `name`, grown when too small."""
        last = self.views.get(name)
        if last is not None and last[0] == shape and last[1] is dtype:
            return last[2]  # the usual case (every chunk of a batch but its last): ~0.2 us, not ~5
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = self.buffers[name] = np.zeros(size, dtype)  # zeros: padding rows stay finite
        view = buf[:size].reshape(shape)
        self.views[name] = (shape, dtype, view)
        return view


WORKSPACE = Workspace()
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (helper threads, pool), made on first use
_POOL_LOCK = threading.Lock()


def _forget_pool() -> None:  # pragma: no cover - runs in forked children
    """A forked child (e.g. a ProcessPoolExecutor worker) has no pool threads: start afresh."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def helper_pool(helpers: int) -> ThreadPoolExecutor:
    """The module's helper threads, at least `helpers` of them."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] < helpers:
            _POOL = (helpers, ThreadPoolExecutor(helpers, thread_name_prefix="ser-logmel"))
        return _POOL[1]
