"""The HTTP layer under the service: its own refusals in the one error shape, and a deadline for request heads.

uvicorn's h11 protocol answers what it cannot parse (a bad chunk size, a duplicate or negative Content-Length, a
NUL in a header) itself, as text/plain, before any ASGI middleware sees the request; and it never closes a
connection that sends nothing, or drips a header byte every few seconds. `guard_h11` patches uvicorn's
`H11Protocol` in the serving process (BentoML builds its uvicorn server after importing the service) so that:

* a request head not complete within `head_timeout_s` of the connection opening (or of the first byte of the
  next request on a kept-alive connection) ends the connection: with 408 `timeout` when part of a head came,
  silently when nothing did (an idle connection is not owed an answer);
* h11's refusals leave as `{"error", "code": "bad_request"}` with h11's reason and its status (400, or 431 for
  an oversize head), logged as one line; uvicorn's fallback 500 leaves in the shape too.

    guard_h11(head_timeout_s=10)   # True once applied
"""

from __future__ import annotations

import logging
from typing import Any

from ser.serving.errors import client_line, error_body

_PHRASES = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _UvicornWarning(logging.Filter):
    """Drop uvicorn's own line for a malformed request: `send_400` logs the client error's one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


def send_raw(transport: Any, status: int, code: str, message: str) -> None:
    """Write a whole error response in the one shape straight to a connection, then close it."""
    body = error_body(message, code)
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
        status,
        _PHRASES.get(status, b"Error"),
        len(body),
    )
    client_line(status, code, "?", "?", message)
    transport.write(head + body)
    transport.close()


def guard_h11(head_timeout_s: float) -> bool:
    """Patch uvicorn's h11 protocol as the module docstring says (again: only the timeout changes)."""
    import h11
    from uvicorn.protocols.http import h11_impl

    protocol: Any = h11_impl.H11Protocol
    protocol.ser_head_timeout_s = float(head_timeout_s)
    if getattr(protocol, "ser_guarded", False):
        return True
    made, received, lost = protocol.connection_made, protocol.data_received, protocol.connection_lost

    def disarm(self: Any) -> None:
        timer = getattr(self, "ser_head_timer", None)
        if timer is not None:
            timer.cancel()
        self.ser_head_timer = None

    def head_timeout(self: Any) -> None:
        self.ser_head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            wait = self.ser_head_timeout_s
            message = f"the request head did not arrive within {wait:g} s (serve.read_timeout_s); send it at once"
            send_raw(self.transport, 408, "timeout", message)
        else:
            self.transport.close()

    def arm(self: Any) -> None:
        if getattr(self, "ser_head_timer", None) is None:
            self.ser_head_timer = self.loop.call_later(self.ser_head_timeout_s, head_timeout, self)

    def connection_made(self: Any, transport: Any) -> None:
        made(self, transport)
        next_event = self.conn.next_event

        def recording_next_event() -> Any:  # keeps h11's reason, which uvicorn drops, for send_400_response
            try:
                return next_event()
            except h11.RemoteProtocolError as err:
                self.ser_error = err
                raise

        self.conn.next_event = recording_next_event
        arm(self)

    def data_received(self: Any, data: bytes) -> None:
        received(self, data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            arm(self)  # a head is under way (the first, or the next one on a kept-alive connection)
        else:
            disarm(self)

    def connection_lost(self: Any, exc: Exception | None) -> None:
        disarm(self)
        lost(self, exc)

    def send_400_response(self: Any, msg: str) -> None:
        disarm(self)
        err = getattr(self, "ser_error", None)
        status = int(getattr(err, "error_status_hint", 400)) if err is not None else 400
        reason = str(err) if err is not None else msg
        message = f"malformed HTTP request ({reason}); expected HTTP/1.1 with well-formed headers and framing"
        send_raw(self.transport, status if status in _PHRASES else 400, "bad_request", message)

    async def send_500_response(self: Any) -> None:
        body = error_body("internal server error (logged with its traceback)", "internal")
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    protocol.connection_made, protocol.data_received = connection_made, data_received
    protocol.connection_lost, protocol.send_400_response = connection_lost, send_400_response
    cycle: Any = h11_impl.RequestResponseCycle
    cycle.send_500_response = send_500_response
    logging.getLogger("uvicorn.error").addFilter(_UvicornWarning())
    protocol.ser_guarded = True
    return True
