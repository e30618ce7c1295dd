"""HTTP plumbing of the service: the 413 error, the body-size guard and the serve limits.

`BodyLimit` is a pure ASGI middleware that refuses a request whose
`Content-Length` is over the upload cap before a byte of the body is read, and
cuts off a chunked body as soon as it passes the cap, so an oversized upload
never reaches the multipart parser or the disk. For the upload endpoints it
also checks the form's shape before BentoML parses it: multipart/form-data,
every part a file in the expected field. BentoML would otherwise answer 500 to
a stray binary field, and treat a text value as a URL to download. `serve_config` reads the
`serve` section that packaging stored in the model's metadata, falling back to
the defaults of `ser.config.ServeParams` when the model is not in the store
yet (e.g. while `bentoml build` imports the module).

    EmotionService.add_asgi_middleware(BodyLimit, max_bytes=20 * 2**20)
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

from ser.config import ServeParams


class TooLarge(BentoMLException):
    """413: the upload or the audio is over a cap."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def serve_config(model_ref: Any) -> dict:
    """The `serve` limits stored with the model, or the ServeParams defaults."""
    defaults = ServeParams().model_dump()
    try:
        stored = model_ref.stored
    except Exception:  # no store, or an unreadable one: the defaults keep the module importable
        stored = None
    if stored is None:
        return defaults
    return {**defaults, **(stored.info.metadata.get("serve") or {})}


_PART_NAME = re.compile(rb'content-disposition:[^\r\n]*?\bname="([^"]*)"([^\r\n]*)', re.IGNORECASE)
_BOUNDARY = re.compile(r'boundary="?([^";,]+)"?', re.IGNORECASE)


def form_problem(body: bytes, content_type: str, field: str) -> str | None:
    """What is wrong with an upload form (None when every part is a file in `field`)."""
    expect = f"send multipart/form-data with the audio file in field `{field}`"
    boundary = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/form-data") or not boundary:
        return f"content type {content_type or 'none'!r}: {expect}"
    names = []
    for part in body.split(b"--" + boundary.group(1).encode())[1:-1]:
        header = _PART_NAME.search(part.split(b"\r\n\r\n", 1)[0])
        if header is None:
            return f"a form part without a name: {expect}"
        name = header.group(1).decode(errors="replace")
        if name != field:
            return f"unexpected form field `{name}`: {expect}"
        if b"filename=" not in header.group(2):
            return f"field `{field}` holds text, not a file: {expect}"
        names.append(name)
    return None if names else f"no file in the form: {expect}"


async def _reply(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes` + `slack` (declared or streamed).

    Args:
        app: the wrapped ASGI app.
        max_bytes: the upload cap.
        slack: room for the multipart envelope around the file.
        forms: upload endpoints and their file field, e.g. {"/predict": "audio"}.
    """

    def __init__(self, app: Any, max_bytes: int, slack: int = 2**16, forms: dict[str, str] | None = None) -> None:
        self.app, self.max_bytes, self.limit = app, max_bytes, max_bytes + slack
        self.forms = forms or {}

    def _message(self, size: int | None) -> str:
        got = f"{size / 2**20:.2f} MiB" if size is not None else "more"
        return f"request body of {got} is over the {self.max_bytes / 2**20:g} MiB upload cap; send a smaller file"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _reply(send, 413, self._message(int(length)))
        if scope.get("method") == "POST" and scope.get("path") in self.forms:
            return await self._checked_form(scope, receive, send, headers.get(b"content-type", b"").decode("latin-1"))
        seen = 0
        limit = self.limit

        async def guarded_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(self._message(None))
            return message

        return await self.app(scope, guarded_receive, send)

    async def _checked_form(self, scope: dict, receive: Any, send: Any, content_type: str) -> None:
        """Read the (capped) body, check the form's shape, then replay the body to the app."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await _reply(send, 413, self._message(None))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = form_problem(body, content_type, self.forms[scope["path"]])
        if problem:
            return await _reply(send, 400, problem)
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
