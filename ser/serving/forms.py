"""The canonical copy of an upload form: what BentoML's form parser gets is small, well formed and counted.

`CanonicalForm` parses a multipart body chunk by chunk (python-multipart, the parser Starlette itself uses) and
writes a canonical copy to a spooled temporary file (memory up to 1 MiB, then disk): a fresh random boundary, one
`Content-Disposition` per part with a short safe file name (`0.wav`, `1.flac`...), the client's bytes untouched.
So odd or 300-byte file names, bare CRs, a second `audio` part or 1001 parts never reach Starlette or BentoML
(whose errors for those are 500s); the client's own names are kept in `names` for error messages.

    form = CanonicalForm(boundary, "audio", max_files=1)
    form.feed(chunk); ...; form.finish()   # then form.out holds the canonical body
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from pathlib import PurePosixPath

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ser.serving.errors import ClientError

# python-multipart warns per malformed header; the gate's refusal already logs that request's one line
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)
_SAFE_EXT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


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
