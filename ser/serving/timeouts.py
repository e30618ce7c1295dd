"""BentoML's request timeout without its memory cost: cancel each request's timer when the request ends.

BentoML 1.4's `TimeoutMiddleware` (bentoml/_internal/server/http/traffic.py) schedules one
`loop.call_later(traffic.timeout, ...)` per request and never cancels it. The timer handle keeps the
request's waiter future and a copy of its context (the OpenTelemetry span, BentoML's request
context, through them the request's task) alive for the whole timeout, 60 s here, after the answer
was sent: under load the service held rps x 60 requests' objects (~6-12 KB each), which is most of
the RSS "growth per request" a 60 s benchmark saw, found with `bench/memory_trace.py` (a tracemalloc
diff; docs/benchmark.md "Memory under load"). `cancel_request_timers` replaces the middleware's
`__call__` with the same logic plus `timer.cancel()` when the request ends (asyncio then drops
cancelled handles once they are half of its timers), and answers a timeout in the service's one
error shape (`{"error", "code": "timeout"}`, 504) instead of BentoML's bare `{"error"}`.
`EmotionService` applies it at import; `SER_BENTOML_TIMERS=keep` leaves BentoML's own (the benchmark's A/B).

    cancel_request_timers()   # True once applied
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


def cancel_request_timers() -> bool:
    """Patch BentoML's TimeoutMiddleware as the module docstring says; False when left as it is."""
    if os.environ.get("SER_BENTOML_TIMERS") == "keep":
        return False
    from bentoml._internal.server.http import traffic
    from starlette.responses import JSONResponse

    middleware = traffic.TimeoutMiddleware
    if getattr(middleware, "cancels_timers", False):
        return True

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)  # the response has started: the timeout no longer applies
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            try:
                await waiter
            except TimeoutError:
                if task.cancel():
                    message = f"the request took longer than the service's {self.timeout:g} s timeout"
                    body = {"error": message, "code": "timeout"}
                    await JSONResponse(body, status_code=504)(scope, receive, send)  # CODES: timeout
            else:
                await task
        finally:
            timer.cancel()  # frees the waiter and, once asyncio prunes it, the request's context

    middleware.__call__ = __call__  # type: ignore[method-assign]
    middleware.cancels_timers = True  # type: ignore[attr-defined]
    return True
