"""FairBatcher: shared model calls split fairly by windows, admission by cost, failures kept to their requests."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from ser.serving.batching import FairBatcher, Overloaded


class Model:
    """A stand-in graph that records which request each row of each call came from (row value = request id)."""

    def __init__(self, delay: float = 0.01, fail_on: float | None = None) -> None:
        self.calls: list[list[int]] = []
        self.delay, self.fail_on = delay, fail_on
        self.release = threading.Event()

    def __call__(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append([int(v) for v in rows[:, 0]])
        threading.Event().wait(self.delay)
        if self.fail_on is not None and self.fail_on in rows[:, 0]:
            raise RuntimeError("the graph failed")
        return rows * 10.0, rows + 0.5


def rows(request: int, n: int) -> np.ndarray:
    return np.full((n, 3), float(request), np.float32)


def test_each_request_gets_its_own_rows_scored_in_order_even_when_split_across_calls() -> None:
    model = Model()
    batcher = FairBatcher(model, max_batch_size=4, quota=2, max_queued=100, gather_s=0.0)

    async def main() -> list:
        heavy = rows(7, 10) + np.arange(10, dtype=np.float32)[:, None] / 100  # rows tell their order apart
        return await asyncio.gather(batcher.submit(heavy), batcher.submit(rows(3, 1)))

    (probs, stats), (probs3, stats3) = asyncio.run(main())
    assert probs.shape == (10, 3) and np.allclose(probs[:, 0], (7 + np.arange(10) / 100) * 10)
    assert np.allclose(stats[:, 0], 7.5 + np.arange(10) / 100) and np.allclose(probs3, 30.0) and stats3.shape == (1, 3)
    assert max(len(c) for c in model.calls) <= 4 and sum(map(len, model.calls)) == 11


def test_a_long_request_does_not_hold_the_model_while_short_ones_wait() -> None:
    model = Model(delay=0.02)
    batcher = FairBatcher(model, max_batch_size=8, quota=2, max_queued=100, gather_s=0.05)
    done: dict[int, int] = {}

    async def short(request: int, after: float) -> None:
        await asyncio.sleep(after)
        await batcher.submit(rows(request, 2))
        done[request] = len(model.calls)

    async def main() -> None:
        await asyncio.gather(batcher.submit(rows(99, 34)), *(short(i, 0.005 * i) for i in range(1, 7)))

    asyncio.run(main())
    # the long request was alone at first and took whole calls; once short ones queued, it had 2 rows a call
    shared = [c for c in model.calls if set(c) - {99}]
    assert shared and all(c.count(99) <= 2 for c in shared)
    assert max(done.values()) < len(model.calls)  # every short one finished before the long one
    assert model.calls[-1] == [99] * len(model.calls[-1])


def test_a_call_of_only_continuing_requests_waits_briefly_for_a_newcomer() -> None:
    model = Model(delay=0.03)
    batcher = FairBatcher(model, max_batch_size=8, quota=2, max_queued=100, gather_s=0.2)

    async def main() -> None:
        async def late() -> None:
            await asyncio.sleep(0.05)  # arrives while the long request's first call runs
            await batcher.submit(rows(1, 2))

        await asyncio.gather(batcher.submit(rows(2, 16)), late())

    asyncio.run(main())
    assert model.calls[0] == [2] * 8 and 1 in model.calls[1]  # the newcomer joined the very next call


def test_admission_refuses_past_the_queue_bound_and_frees_on_release() -> None:
    batcher = FairBatcher(Model(), max_batch_size=8, quota=2, max_queued=10)
    first = batcher.reserve(8)
    with pytest.raises(Overloaded, match=r"8 windows queued, the limit is 10\); retry after \d+ s") as busy:
        batcher.reserve(3)
    assert busy.value.retry_after_s >= 1
    with pytest.raises(Overloaded, match="more than the service ever queues") as never:
        batcher.reserve(11)
    assert never.value.retry_after_s == 0
    with first:
        assert batcher.reserved == 8
    assert batcher.reserved == 0
    with batcher.reserve(10):
        assert batcher.reserved == 10


def test_a_failing_call_fails_only_the_requests_in_it_and_the_batcher_goes_on() -> None:
    model = Model(fail_on=5.0)
    batcher = FairBatcher(model, max_batch_size=2, quota=1, max_queued=100, gather_s=0.0)

    async def main() -> list:
        return await asyncio.gather(
            batcher.submit(rows(5, 1)), batcher.submit(rows(1, 3)), batcher.submit(rows(2, 1)), return_exceptions=True
        )

    bad, one, two = asyncio.run(main())
    assert isinstance(bad, RuntimeError) and not isinstance(two, BaseException)
    assert isinstance(one, RuntimeError | tuple)  # shared the failing call, or not: either way an answer
    ok = asyncio.run(FairBatcher(Model(), gather_s=0.0).submit(rows(4, 2)))
    assert np.allclose(ok[0], 40.0)


def test_a_request_whose_client_went_away_is_dropped_from_the_queue() -> None:
    model = Model(delay=0.05)
    batcher = FairBatcher(model, max_batch_size=4, quota=2, max_queued=100, gather_s=0.0)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(rows(1, 2)))
        gone = asyncio.ensure_future(batcher.submit(rows(2, 40)))
        await asyncio.sleep(0.01)
        gone.cancel()
        await first

    asyncio.run(main())
    assert sum(c.count(2) for c in model.calls) <= 4  # at most the calls already under way when it left
