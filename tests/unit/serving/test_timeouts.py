"""BentoML's request timeout: the patched middleware frees each request when it ends, and still times out."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


class Request:
    """A stand-in for what a request leaves in its context (a span, the request's objects)."""


async def serve(middleware, app, n: int) -> tuple[list[dict], list[weakref.ref]]:
    """Send `n` requests through `middleware(app)`; returns the messages sent and weak refs to each request."""
    from contextvars import ContextVar

    current: ContextVar[Request] = ContextVar("current")
    refs, sent = [], []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one():
        request = Request()
        refs.append(weakref.ref(request))
        current.set(request)  # the timer's copy of the context would hold this
        await middleware(app, timeout=0.2)({"type": "http", "path": "/"}, receive, send)

    await asyncio.gather(*(asyncio.create_task(one()) for _ in range(n)))
    return sent, refs


async def quick_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def slow_app(scope, receive, send):
    await asyncio.sleep(5)


def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_bentoml_alone_keeps_every_request_for_its_timeout():
    """Upstream's behaviour, the reason for the patch (in a fresh process: the service module patches at import).
    When BentoML cancels its timers itself, this fails and `ser.serving.timeouts` can go."""
    code = (
        "import asyncio, gc\n"
        "from bentoml._internal.server.http import traffic\n"
        "from tests.unit.serving.test_timeouts import quick_app, run, serve\n"
        "async def check():\n"
        "    _, refs = await serve(traffic.TimeoutMiddleware, quick_app, 150)\n"
        "    await asyncio.sleep(0)\n"
        "    gc.collect()\n"
        "    return sum(r() is not None for r in refs)\n"
        "print(run(check()))\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert ran.stdout.split()[-1] == "150"


def test_patched_middleware_frees_requests_and_still_times_out():
    from bentoml._internal.server.http import traffic

    from ser.serving.timeouts import cancel_request_timers

    assert cancel_request_timers() and cancel_request_timers()  # applying twice is harmless

    async def check():
        sent, refs = await serve(traffic.TimeoutMiddleware, quick_app, 150)
        await asyncio.sleep(0)  # let asyncio prune the cancelled timers
        gc.collect()
        alive = sum(r() is not None for r in refs)
        slow, _ = await serve(traffic.TimeoutMiddleware, slow_app, 1)
        return sent, alive, slow

    sent, alive, slow = run(check())
    assert sum(m.get("status") == 200 for m in sent) == 150
    # asyncio prunes cancelled timers once they are over half of its (at least 100) timers: none is left
    assert alive == 0
    start, body = slow
    assert start["status"] == 504
    assert json.loads(body["body"]) == {
        "error": "the request took longer than the service's 0.2 s timeout",
        "code": "timeout",
    }
