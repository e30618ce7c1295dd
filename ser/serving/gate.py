"""The upload gate: every request body is capped and read against a clock; uploads are bounded and canonical.

`UploadGate` is a pure ASGI middleware in front of the whole app. It refuses on the declared `Content-Length`
before reading a byte, and every read of a body must bring bytes within `read_timeout` (else 408 `timeout`, and
the connection closes): a client that sends headers and never the body holds a coroutine for seconds, not a slot
for good. Upload bodies (the form endpoints) are read into a canonical copy (`ser.serving.forms`) before anything
downstream runs, at most `max_uploads` at once, a slot taken with the first body bytes (a head alone holds none):
when all are taken, the upload idle longest (over one second) is dropped with 408 to make room, else the newcomer
gets 503 `overloaded` with Retry-After; so slow uploads cannot deny service to fast ones. Bytes in flight
downstream are capped (`max_inflight_bytes`), so concurrent big uploads wait, not pile up. `/infer` takes JSON
only; `GET /demo` redirects to the relative `/demo/` (never to the client's Host). `serve_config` reads the
`serve` limits packaging stored in the model.

    EmotionService.add_asgi_middleware(UploadGate, max_bytes=20 * 2**20, forms={"/predict": ("audio", 1)})
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_multipart.multipart import parse_options_header

from ser.config import ServeParams
from ser.serving.errors import ClientError, reply
from ser.serving.forms import CanonicalForm

CHUNK = 1 << 16
EVICTABLE_IDLE_S = 1.0  # an upload this long without a byte may be dropped when a newcomer finds no free slot


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


def input_shape(model_ref: Any) -> tuple[int, ...] | None:
    """The stored model's graph input shape (frames, mels) from its front end; None when not in the store."""
    from ser.features.frontend import Frontend

    try:
        return Frontend.load(Path(model_ref.stored.path)).shape
    except Exception:  # no store yet (e.g. while `bentoml build` imports the module)
        return None


@dataclass
class _Upload:
    """An upload body being read: when its last bytes came, and the clock its current read runs against."""

    last: float
    deadline: asyncio.Timeout | None = None
    dropped: bool = False


class UploadGate:
    """ASGI middleware: byte cap and read timeouts for every request, bounded canonical uploads.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the upload cap; bodies may be up to `slack` bytes larger (the multipart envelope).
        forms: upload endpoint -> (file field, most files), e.g. {"/predict": ("audio", 1)}.
        read_timeout: seconds each read of a body may wait for bytes.
        max_uploads: upload bodies read at once.
        max_inflight_bytes: canonical bodies being handled downstream at once, at most (others wait).
        json_routes: routes that take a JSON body only.
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        forms: dict[str, tuple[str, int]] | None = None,
        read_timeout: float = 10.0,
        max_uploads: int = 256,
        slack: int = 2**16,
        max_inflight_bytes: int = 256 * 2**20,
        json_routes: tuple[str, ...] = (),
    ) -> None:
        self.app, self.max_bytes, self.limit = app, max_bytes, max_bytes + slack
        self.forms, self.json_routes = forms or {}, json_routes
        self.read_timeout, self.max_uploads = read_timeout, max(1, max_uploads)
        self.uploads: dict[int, _Upload] = {}
        self.max_inflight, self.inflight = max(max_inflight_bytes, self.limit), 0
        self._room = asyncio.Condition()

    def _too_large(self, size: int | None) -> ClientError:
        cap = f"the {self.max_bytes / 2**20:g} MiB upload cap"
        if size is None:  # a body without a Content-Length: counted as it came
            return ClientError("too_large", f"the request body passed {cap} before it ended; send a smaller file")
        return ClientError("too_large", f"request body of {size / 2**20:.2f} MiB is over {cap}; send a smaller file")

    async def _read(self, receive: Any, upload: _Upload | None = None) -> dict:
        """One body message within the read timeout (408 `timeout` otherwise, or when dropped for room)."""
        try:
            async with asyncio.timeout(self.read_timeout) as deadline:
                if upload is not None:
                    if upload.dropped:
                        deadline.reschedule(-1)
                    upload.deadline = deadline
                message = await receive()
        except TimeoutError:
            why = (
                "dropped to make room: the upload sent nothing for over 1 s while every upload slot was taken"
                if upload is not None and upload.dropped
                else f"no bytes of the request body for {self.read_timeout:g} s (serve.read_timeout_s)"
            )
            raise ClientError("timeout", f"{why}; send the body at once", 408) from None
        if upload is not None:
            upload.deadline, upload.last = None, time.monotonic()
        return message

    def _admit_upload(self) -> _Upload:
        """A slot for an upload body: a free one, or the idlest upload's (dropped), or 503 `overloaded`."""
        now = time.monotonic()
        if len(self.uploads) >= self.max_uploads:
            idlest = min(self.uploads.values(), key=lambda u: u.last)
            if now - idlest.last < EVICTABLE_IDLE_S or idlest.dropped:
                raise ClientError(
                    "overloaded",
                    f"{len(self.uploads)} uploads are being received, the most at once (serve.max_uploads); "
                    "retry after 1 s",
                    503,
                )
            idlest.dropped = True
            if idlest.deadline is not None:
                idlest.deadline.reschedule(-1)  # its pending read ends now, as a 408
        upload = _Upload(now)
        self.uploads[id(upload)] = upload
        return upload

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").strip()
        path, method = scope.get("path"), scope.get("method")
        try:
            if length and (not length.isdigit() or int(length) > self.limit):
                raise (
                    self._too_large(int(length))
                    if length.isdigit()
                    else ClientError(
                        "bad_form", f"Content-Length {length[:40].decode('latin-1')!r} is not a byte count"
                    )
                )
            if path == "/demo" and method in ("GET", "HEAD"):  # relative: the client's Host is never echoed
                query = scope.get("query_string") or b""
                location = b"/demo/" + (b"?" + query if query else b"")
                await send({"type": "http.response.start", "status": 308, "headers": [(b"location", location)]})
                return await send({"type": "http.response.body", "body": b""})
            if method == "POST" and path in self.json_routes:
                kind, _ = parse_options_header(headers.get(b"content-type", b""))
                if kind != b"application/json":
                    shown = headers.get(b"content-type", b"")[:80].decode("latin-1") or "none"
                    raise ClientError("invalid_input", f"content type {shown!r}: {path} takes application/json")
            if method == "POST" and path in self.forms:
                return await self._form(scope, receive, send, headers.get(b"content-type", b""))
        except ClientError as err:
            return await reply(send, err.error_code.value, err.code, err.message, scope)
        seen = 0

        async def capped_receive() -> dict:
            nonlocal seen
            message = await self._read(receive)
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._too_large(None)  # BentoML answers it as a 413 in the one shape
            return message

        return await self.app(scope, capped_receive, send)

    async def _form(self, scope: dict, receive: Any, send: Any, content_type: bytes) -> None:
        field, max_files = self.forms[scope["path"]]
        kind, options = parse_options_header(content_type)
        if kind != b"multipart/form-data" or not options.get(b"boundary"):
            shown = content_type[:80].decode("latin-1") or "none"
            raise ClientError(
                "bad_form", f"content type {shown!r}: send multipart/form-data with the file in `{field}`"
            )
        form, size, more, upload = CanonicalForm(options[b"boundary"], field, max_files), 0, True, None
        try:
            try:
                while more:
                    message = await self._read(receive, upload)
                    if message["type"] != "http.request":
                        return None  # the client went away
                    upload = upload or self._admit_upload()  # a slot from the first body bytes: heads alone hold none
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limit:
                        raise self._too_large(None)
                    form.feed(chunk)
                    more = message.get("more_body", False)
                form.finish()
            finally:
                if upload is not None:
                    del self.uploads[id(upload)]  # the body is read (or refused): the slot is free
            await self._forward(scope, receive, send, form, size)
        finally:
            form.close()
        return None

    async def _forward(self, scope: dict, receive: Any, send: Any, form: CanonicalForm, size: int) -> None:
        async with self._room:
            await self._room.wait_for(lambda: self.inflight + size <= self.max_inflight)
            self.inflight += size
        try:
            total = form.out.seek(0, 2)
            form.out.seek(0)
            kept = [
                (k, v)
                for k, v in scope["headers"]
                if k not in (b"content-type", b"content-length", b"transfer-encoding")
            ]
            canonical = [(b"content-type", b"multipart/form-data; boundary=" + form.boundary)]
            headers = [*kept, *canonical, (b"content-length", str(total).encode())]
            state = {**(scope.get("state") or {}), "upload_names": form.names}
            inner = {**scope, "headers": headers, "state": state}

            finished = False

            async def replay() -> dict:
                nonlocal finished
                if finished:
                    return await receive()  # the body is replayed: what follows is the client's disconnect
                chunk = form.out.read(CHUNK)
                finished = form.out.tell() >= total
                return {"type": "http.request", "body": chunk, "more_body": not finished}

            await self.app(inner, replay, send)
        finally:
            async with self._room:
                self.inflight -= size
                self._room.notify_all()
