"""The upload gate: what reaches BentoML's form parser is small, well formed and already counted.

`UploadGate` is a pure ASGI middleware in front of the upload endpoints. It refuses on the
declared `Content-Length` before reading a byte, then streams the body through a multipart
parser (python-multipart, the parser Starlette itself uses) and writes a *canonical* copy of
the form to a spooled temporary file (memory up to 1 MiB, then disk): a fresh random boundary,
one `Content-Disposition` per part with a short safe file name (`0.wav`, `1.flac`...), the
client's bytes untouched. So odd or 300-byte file names, bare CRs, a second `audio` part or
1001 parts never reach Starlette or BentoML (whose errors for those are 500s); the client's
own names travel in `scope["state"]["upload_names"]` for error messages. Bytes in flight
downstream are capped (`max_inflight_bytes`), so concurrent big uploads wait, not pile up.
`serve_config` reads the `serve` limits packaging stored in the model's metadata.

    EmotionService.add_asgi_middleware(UploadGate, max_bytes=20 * 2**20, forms={"/predict": ("audio", 1)})
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ser.config import ServeParams
from ser.serving.errors import ClientError, reply

CHUNK = 1 << 16
# python-multipart warns per malformed header; the gate's refusal already logs that request's one line
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)
_SAFE_EXT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


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


def safe_name(index: int, filename: str) -> str:
    """A short file name that keeps a plain extension of the client's name (`3.wav`)."""
    ext = PurePosixPath(filename.replace("\\", "/")).suffix.lower()[1:9]
    return f"{index}.{ext}" if ext and set(ext) <= _SAFE_EXT else f"{index}.audio"


class CanonicalForm:
    """Parse a multipart body chunk by chunk and write its canonical copy to a spooled file.

    Raises `ClientError` (bad_form, too_many_files) as soon as a part breaks the rules.
    """

    def __init__(self, boundary: bytes, field: str, max_files: int) -> None:
        self.field, self.max_files = field, max_files
        self.boundary = f"ser-{secrets.token_hex(16)}".encode()
        self.out = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 - handed to the replay
        self.names: list[str] = []
        self.done = False
        self._header: list[bytes] = [b"", b""]
        self._headers: dict[bytes, bytes] = {}
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add(0, d[s:e]),
            "on_header_value": lambda d, s, e: self._add(1, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda d, s, e: self.out.write(d[s:e]),
            "on_part_end": lambda: self.out.write(b"\r\n"),
            "on_end": self._end,
        }
        self.parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the spooled copy and drop the parser, whose callbacks refer back to this form: a reference
        cycle that would otherwise wait for a full garbage collection (rare beside TensorFlow's large heap)."""
        self.out.close()
        self.parser = None  # type: ignore[assignment]

    def _add(self, which: int, data: bytes) -> None:
        self._header[which] += data
        if len(self._header[which]) > 8192:
            raise ClientError("bad_form", "a multipart header is longer than 8 KiB")

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header[0].strip().lower()] = self._header[1].strip()
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        expect = f"send multipart/form-data with the audio file in field `{self.field}`"
        disposition = self._headers.get(b"content-disposition")
        if disposition is None:
            raise ClientError("bad_form", f"a form part without a Content-Disposition header: {expect}")
        if any(c in disposition for c in (b"\r", b"\n", b"\0")):
            raise ClientError("bad_form", f"a part's Content-Disposition holds a control character: {expect}")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != self.field:
            raise ClientError("bad_form", f"unexpected form field `{name[:100]}`: {expect}")
        filename = options.get(b"filename")
        if filename is None:
            raise ClientError("bad_form", f"field `{self.field}` holds text, not a file: {expect}")
        if len(self.names) >= self.max_files:
            one = self.max_files == 1
            hint = "; send several files to /predict_batch" if one else " (serve.max_batch_files)"
            status = 400 if one else 413
            got = "more than one file" if one else f"more than {self.max_files} files"
            raise ClientError("too_many_files", f"{got} in `{self.field}`; the limit is {self.max_files}{hint}", status)
        client = filename.decode("utf-8", "replace")
        self.names.append(client)
        head = (
            f'--{self.boundary.decode()}\r\nContent-Disposition: form-data; name="{self.field}"; '
            f'filename="{safe_name(len(self.names) - 1, client)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        self.out.write(head.encode())

    def _end(self) -> None:
        self.out.write(b"--" + self.boundary + b"--\r\n")
        self.done = True

    def feed(self, chunk: bytes) -> None:
        """Parse one chunk of the body."""
        try:
            self.parser.write(chunk)
        except ClientError:
            raise
        except MultipartParseError as err:
            raise ClientError("bad_form", f"malformed multipart body ({err})") from None

    def finish(self) -> None:
        """Check the body was complete and held a file; rewind the copy for the replay."""
        if not self.done:
            raise ClientError("bad_form", "the multipart body ends before its closing boundary")
        if not self.names:
            raise ClientError("bad_form", f"no file in the form: send the audio file in field `{self.field}`")
        self.out.seek(0)


class UploadGate:
    """ASGI middleware: byte cap for every request, canonical forms for the upload endpoints.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the upload cap; bodies may be up to `slack` bytes larger (the multipart envelope).
        forms: upload endpoint -> (file field, most files), e.g. {"/predict": ("audio", 1)}.
        max_inflight_bytes: canonical bodies being handled downstream at once, at most (others wait).
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        forms: dict[str, tuple[str, int]] | None = None,
        slack: int = 2**16,
        max_inflight_bytes: int = 256 * 2**20,
    ) -> None:
        self.app, self.max_bytes, self.limit = app, max_bytes, max_bytes + slack
        self.forms = forms or {}
        self.max_inflight, self.inflight = max(max_inflight_bytes, self.limit), 0
        self._room = asyncio.Condition()

    def _too_large(self, size: int | None) -> ClientError:
        got = f"{size / 2**20:.2f} MiB" if size is not None else "more"
        cap = self.max_bytes / 2**20
        return ClientError(
            "too_large", f"request body of {got} is over the {cap:g} MiB upload cap; send a smaller file"
        )

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"").strip()
        try:
            if length and (not length.isdigit() or int(length) > self.limit):
                raise (
                    self._too_large(int(length))
                    if length.isdigit()
                    else ClientError(
                        "bad_form", f"Content-Length {length[:40].decode('latin-1')!r} is not a byte count"
                    )
                )
            if scope.get("method") == "POST" and scope.get("path") in self.forms:
                return await self._form(scope, receive, send, headers.get(b"content-type", b""))
        except ClientError as err:
            return await reply(send, err.error_code.value, err.code, err.message, scope)
        seen = 0

        async def capped_receive() -> dict:
            nonlocal seen
            message = await receive()
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
        form, size, more = CanonicalForm(options[b"boundary"], field, max_files), 0, True
        try:
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return None  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    raise self._too_large(None)
                form.feed(chunk)
                more = message.get("more_body", False)
            form.finish()
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
