"""One error shape for every refusal of the service, stable error codes, one log line per client error.

Every answer that is not a 2xx has the body `{"error": "<what was wrong, what is expected>",
"code": "<stable code>"}`, whichever layer refused: the upload gate (`ser.serving.gate`), the
API methods (`ClientError`), BentoML's own validation, or the router (404, 405). `ErrorShape`,
the outermost ASGI middleware, rewrites whatever body a layer below produced into that shape;
`ser.serving.codes.CODES` is the documented list. Client errors are logged as one INFO line (`ClientErrorLog`
turns BentoML's ERROR-with-traceback record into one); server errors keep their traceback.

    raise ClientError("too_long", "audio lasts 75.0 s; the limit is 60 s")
    EmotionService.add_asgi_middleware(ErrorShape)
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

from ser.serving.codes import CODES

# under "bentoml" so the server's own log configuration (handler, level, format) prints it
LOG = logging.getLogger("bentoml.ser_serving")

_BY_STATUS = {
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    416: "bad_range",
    422: "invalid_input",
    429: "overloaded",
    503: "overloaded",
}
_TAGGED = re.compile(r"^\[([a-z_]+)\] (.*)$", re.DOTALL)
_RETRY = re.compile(r"retry after (\d+) s")


def retry_after(code: str, message: str) -> list[tuple[bytes, bytes]]:
    """The Retry-After header of an `overloaded` answer (the seconds its message names; else 1), or none."""
    if code != "overloaded":
        return []
    found = _RETRY.search(message)
    return [(b"retry-after", (found.group(1) if found else "1").encode())]


class ClientError(BentoMLException):
    """A refusal with a stable `code`; its status comes from `CODES` unless given."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"[{code}] {message}")  # BentoML renders str(exc); ErrorShape reads the tag back
        self.code, self.message = code, message  # after super(), which sets .message to the tagged text
        # BentoML hides a 5xx exception's message (and logs a traceback): `overloaded` travels as 429 and leaves as
        # its 503 (ErrorShape)
        self.error_code = HTTPStatus(min(status or CODES[code][0], 429))


def error_body(message: str, code: str) -> bytes:
    """The one error shape, as JSON bytes."""
    return json.dumps({"error": message, "code": code}).encode()


def public_status(code: str, status: int) -> int:
    """The status a client sees: `overloaded` travels inside the app as 429 (see ClientError) and leaves as 503."""
    return CODES[code][0] if code == "overloaded" else status


def client_line(status: int, code: str, method: str, path: str, message: str) -> None:
    """Log a client error as one line."""
    status = public_status(code, status)
    LOG.info("client error %d %s on %s %s: %s", status, code, method, path, message[:300])


async def reply(send: Any, status: int, code: str, message: str, scope: dict | None = None) -> None:
    """Send an error response in the one shape (and log it as a client error)."""
    if scope is not None:
        client_line(status, code, scope.get("method", "?"), scope.get("path", "?"), message)
    body = error_body(message, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += retry_after(code, message) + ([(b"connection", b"close")] if status == 408 else [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def reshape(status: int, body: bytes) -> tuple[str, str]:
    """(message, code) of whatever error body a layer produced."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = body.decode("utf-8", "replace").strip()
    if isinstance(data, list) and data:  # BentoML's 4xx: [{"error": ...}]
        data = data[0]
    if isinstance(data, dict):
        message = str(data.get("error") or data.get("detail") or "")
        if isinstance(data.get("detail"), list):  # pydantic: {"error": "1 validation error", "detail": [...]}
            parts = [f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in data["detail"][:5]]
            return f"{message}: {'; '.join(parts)}", "invalid_input"
        if isinstance(data.get("code"), str):
            return message, data["code"]
    else:
        message = str(data)
    tagged = _TAGGED.match(message)
    if tagged:
        return tagged.group(2), tagged.group(1)
    default = "internal" if status >= 500 else _BY_STATUS.get(status, "invalid_input" if status == 400 else "")
    return message or HTTPStatus(status).phrase, default or f"http_{status}"


class ErrorShape:
    """ASGI middleware: every non-2xx response leaves in the one error shape (`error_body`)."""

    def __init__(self, app: Any, max_error_bytes: int = 2**20) -> None:
        self.app, self.max_error_bytes = app, max_error_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict | None = None
        chunks: list[bytes] = []

        async def shaped_send(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held = message  # hold the start until the body is known
                return None
            if held is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body") and sum(map(len, chunks)) < self.max_error_bytes:
                return None
            text, code = reshape(held["status"], b"".join(chunks))
            status = public_status(code, held["status"])
            body = error_body(text, code)
            dropped = (b"content-length", b"content-type", b"retry-after")
            keep = [(k, v) for k, v in held.get("headers", []) if k.lower() not in dropped]
            headers = [*keep, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += retry_after(code, text)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            held = None
            chunks.clear()
            return None

        return await self.app(scope, receive, shaped_send)


class ClientErrorLog(logging.Filter):
    """Turn BentoML's `Exception on /path [POST]` ERROR record into one INFO line for client errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not _is_client_error(exc):
            return True
        if isinstance(exc, ClientError):
            message, code = exc.message, exc.code
        elif type(exc).__name__ == "ValidationError":
            message, code = str(exc).splitlines()[0], "invalid_input"
        else:  # another BentoML 4xx
            message, code = reshape(int(getattr(exc, "error_code", 400)), json.dumps({"error": str(exc)}).encode())
        status = public_status(code, int(getattr(exc, "error_code", 400)))
        path, method = record.args[:2] if isinstance(record.args, tuple) and len(record.args) >= 2 else ("?", "?")
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "client error %d %s on %s %s: %s", (status, code, method, path, message[:300])
        record.exc_info, record.exc_text = None, None
        return True


def _is_client_error(exc: BaseException) -> bool:
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return True
    status = getattr(exc, "error_code", None)
    return isinstance(exc, BentoMLException) and status is not None and int(status) < 500


def install_log_filter() -> None:
    """Attach `ClientErrorLog` to the logger BentoML reports API exceptions on."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, ClientErrorLog) for f in logger.filters):
        logger.addFilter(ClientErrorLog())
