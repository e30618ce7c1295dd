"""A tiny threaded HTTP server on 127.0.0.1 for tests that must not touch the internet.

It serves in-memory bodies by path, honours `Range: bytes=N-[M]` with 206 replies, records
every request, and can simulate trouble:

* ``fail_first_n``: answer the first N requests with 503 Service Unavailable;
* ``cut_after`` / ``cut_count``: send the full headers but only ``cut_after`` body bytes, then
  drop the connection (for the next ``cut_count`` eligible responses; ``cut_paths`` limits
  which paths are eligible, ``None`` means all);
* ``ignore_range``: answer range requests with a plain 200 and the whole body.

    >>> with LocalServer() as srv:  # doctest: +SKIP
    ...     srv.add("/f.bin", b"abc")
    ...     requests.get(srv.url("/f.bin")).content
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class LocalServer:
    """Threaded HTTP server with fault-injection knobs; use as a context manager or start/stop."""

    fail_first_n: int = 0
    cut_after: int | None = None
    cut_count: int = 1
    cut_paths: set[str] | None = None
    ignore_range: bool = False
    routes: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- content -----------------------------------------------------------------------------
    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve `body` at `path`; return its absolute URL (the server must be started)."""
        self.routes[path] = (body, content_type)
        return self.url(path)

    def url(self, path: str) -> str:
        """Absolute URL of `path` on this server."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def seen(self, path: str | None = None) -> list[Seen]:
        """Requests received so far, optionally only those for `path`."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind a random free port and serve in a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- decisions (called from handler threads) ---------------------------------------------
    def _record(self, seen: Seen) -> tuple[bool, bool]:
        """Log a request; return (fail with 503?, cut this response?)."""
        with self._lock:
            self.requests.append(seen)
            if self.fail_first_n > 0:
                self.fail_first_n -= 1
                return True, False
            eligible = self.cut_paths is None or seen.path in self.cut_paths
            if self.cut_after is not None and self.cut_count > 0 and eligible:
                self.cut_count -= 1
                return False, True
            return False, False


_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def _make_handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, ctype: str, extra: dict[str, str], cut: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut:
                self.wfile.write(body[: server.cut_after])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def do_GET(self) -> None:
            seen = Seen(self.command, self.path.split("?")[0], dict(self.headers.items()))
            fail, cut = server._record(seen)
            if fail:
                seen.status = 503
                return self._reply(503, b"busy", "text/plain", {"Retry-After": "0"}, False)
            if seen.path not in server.routes:
                seen.status = 404
                return self._reply(404, b"not found", "text/plain", {}, False)
            body, ctype = server.routes[seen.path]
            match = _RANGE.match(self.headers.get("Range", "").strip())
            if match and not server.ignore_range:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else len(body) - 1
                if start >= len(body):
                    seen.status = 416
                    rng = {"Content-Range": f"bytes */{len(body)}"}
                    return self._reply(416, b"", ctype, rng, False)
                end = min(end, len(body) - 1)
                seen.status = 206
                rng = {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
                return self._reply(206, body[start : end + 1], ctype, rng, cut)
            seen.status = 200
            return self._reply(200, body, ctype, {}, cut)

        do_HEAD = do_GET

    return Handler
