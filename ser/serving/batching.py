"""Fair batching and admission control for the model: requests share each call by windows, not by arrival.

`FairBatcher` runs one model call at a time in a worker thread. Each call takes windows from the queued
requests, those that have had the fewest windows scored first, at most `quota` windows from one request while
others wait, and beside requests not yet served, `quota` windows in all from those already under way, up to
`max_batch_size` windows: a 60 s clip (34 windows) is scored a few windows per call beside
the 3.5 s clips that keep arriving, instead of holding the model while they queue. A request found alone takes
a whole call. When only requests already being scored are queued, a call waits up to `gather_s` for new
arrivals, so a short request that comes a moment later joins the next call instead of waiting behind it.

Admission is by cost before decoding: `reserve(windows)` (counted from the upload's header) refuses with
`Overloaded` when the windows admitted and not yet scored would pass `max_queued`, saying when to retry (the
queue's drain time at the measured rate); `release` when the request ends. A failing call fails only its own
requests; a request whose client went away is dropped from the queue.

    batcher = FairBatcher(predictor.run, max_batch_size=32, quota=2, max_queued=256)
    with batcher.reserve(windows):
        probs, stats = await batcher.submit(features)
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import numpy as np

Scores = tuple[np.ndarray, np.ndarray]  # (probabilities, clip statistics), one row per window


class Overloaded(Exception):
    """The queue is full: the request is refused before any work, with a time to retry after."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Reservation:
    """Admitted windows, given back when the `with` block (or `close`) ends."""

    def __init__(self, batcher: FairBatcher, windows: int) -> None:
        self.batcher, self.windows = batcher, windows

    def close(self) -> None:
        """Give the windows back (once)."""
        self.batcher.reserved -= self.windows
        self.windows = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Job:
    rows: np.ndarray
    future: asyncio.Future
    order: int
    done: int = 0  # windows scored so far
    taken: int = 0  # windows handed to calls so far
    parts: list[Scores] = field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.rows) - self.taken


class FairBatcher:
    """Score window rows through `fn` in shared calls, fairly between requests, with a bounded queue.

    Args:
        fn: (n, ...) rows -> (probabilities (n, c), statistics (n, d)); runs in a worker thread.
        max_batch_size: the most windows one call takes.
        quota: the most windows of one request in a call while other requests wait.
        max_queued: the most windows admitted (reserved) and not yet scored.
        gather_s: how long a call of only continuing requests waits for new ones.
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Scores],
        max_batch_size: int = 32,
        quota: int = 2,
        max_queued: int = 256,
        gather_s: float = 0.02,
    ) -> None:
        self.fn = fn
        self.max_batch_size, self.quota = max(1, int(max_batch_size)), max(1, int(quota))
        self.max_queued, self.gather_s = max(1, int(max_queued)), gather_s
        self.reserved = 0
        self.seconds_per_window = 0.05  # a first guess, replaced by the measured rate after the first call
        self.calls = self.shared_calls = 0  # model calls; those holding windows of more than one request
        self._jobs: list[_Job] = []
        self._order = itertools.count()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def reserve(self, windows: int) -> Reservation:
        """Admit a request of `windows` windows until the returned reservation is closed, or raise `Overloaded`."""
        windows = max(1, int(windows))
        if windows > self.max_queued:
            raise Overloaded(
                f"the request needs {windows} model windows, more than the service ever queues "
                f"({self.max_queued}, serve.max_queued_windows); send shorter or fewer clips",
                0,
            )
        if self.reserved + windows > self.max_queued:
            wait = max(1, math.ceil(self.reserved * self.seconds_per_window))
            raise Overloaded(
                f"the service is at capacity ({self.reserved} windows queued, the limit is {self.max_queued}); "
                f"retry after {wait} s",
                wait,
            )
        self.reserved += windows
        return Reservation(self, windows)

    async def submit(self, rows: np.ndarray) -> Scores:
        """Queue a request's window rows and wait for their (probabilities, statistics)."""
        future = asyncio.get_running_loop().create_future()
        if len(rows) == 0:
            raise ValueError("no window rows to score")
        self._jobs.append(_Job(np.asarray(rows), future, next(self._order)))
        if self._arrived is not None:
            self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[_Job, int, int]]:
        """(job, first row, rows) slices for the next call: least-served requests first, `quota` each."""
        self._jobs = [j for j in self._jobs if not j.future.done()]  # the caller went away
        waiting = sorted((j for j in self._jobs if j.left > 0), key=lambda j: (j.taken, j.order))
        share = self.max_batch_size if len(waiting) == 1 else self.quota
        fresh = any(j.taken == 0 for j in waiting)
        room, continuing, picked = self.max_batch_size, self.quota, []
        for job in waiting:
            n = min(job.left, share, room)
            if fresh and job.taken:  # beside new requests, those already under way share one quota
                n, continuing = min(n, continuing), continuing - min(n, continuing)
            if n <= 0:
                continue
            picked.append((job, job.taken, n))
            job.taken += n
            room -= n
        return picked

    async def _gather(self) -> None:
        """Wait briefly for a new request when every queued one has already been served a call."""
        if self._jobs and all(j.taken > 0 for j in self._jobs):
            self._arrived = asyncio.Event()
            try:
                await asyncio.wait_for(self._arrived.wait(), self.gather_s)
            except TimeoutError:
                pass
            finally:
                self._arrived = None

    async def _drain(self) -> None:
        while any(j.left > 0 for j in self._jobs):
            await self._gather()
            picked = self._take()
            if not picked:
                continue
            rows = np.concatenate([job.rows[a : a + n] for job, a, n in picked])
            started = time.perf_counter()
            try:
                probs, stats = await anyio.to_thread.run_sync(self.fn, rows)
            except Exception as err:  # noqa: BLE001 - handed to every request in the call
                for job, _, _ in picked:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            per_window = (time.perf_counter() - started) / sum(n for _, _, n in picked)
            self.seconds_per_window = 0.8 * self.seconds_per_window + 0.2 * per_window
            self.calls += 1
            self.shared_calls += len(picked) > 1
            at = 0
            for job, _, n in picked:
                job.parts.append((probs[at : at + n], stats[at : at + n]))
                job.done, at = job.done + n, at + n
                if job.done == len(job.rows) and not job.future.done():
                    job.future.set_result(tuple(np.concatenate(p) for p in zip(*job.parts, strict=True)))
            self._jobs = [j for j in self._jobs if not j.future.done()]
