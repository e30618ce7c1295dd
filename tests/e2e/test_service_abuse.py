"""The service against abusive clients: malformed HTTP, slow or silent connections, full queues, odd routes.

Each case goes to the session's real `bentoml serve` (tests/e2e/conftest.py: the tiny model, its test limits in
tests/support.SERVE: read_timeout_s 3, max_uploads 4, max_queued_windows 40, max_batch_size 8) over raw sockets
where a client library would refuse to send it. Every refusal is in the one shape `{"error", "code"}`; `/readyz`
answers after each case; the session's log holds no traceback (conftest).
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

from tests.support import SERVE, wav_bytes

pytestmark = pytest.mark.slow
TIMEOUT = float(SERVE["read_timeout_s"])
SHAPE = (63, 16)  # the tiny model's graph input


def connect(url: str) -> socket.socket:
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=TIMEOUT + 10)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read a whole response (the server closes or gives its length): status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data  # closed without a response
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(url: str, raw: bytes) -> tuple[int, dict[str, str], dict]:
    with connect(url) as sock:
        sock.sendall(raw)
        status, headers, body = answer(sock)
    return status, headers, json.loads(body) if body else {}


def shaped(body: dict, code: str, words: str | None = None) -> None:
    assert set(body) == {"error", "code"} and body["code"] == code, body
    assert words is None or words in body["error"], body["error"]


def alive(url: str) -> None:
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200


FORM_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
    b"Content-Length: 100000\r\n\r\n"
)
MALFORMED = {
    "bad chunk size": b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    "two Content-Lengths": b"POST /infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
    "negative Content-Length": b"POST /infer HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    "NUL in a header": b"GET /readyz HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_the_http_parsers_refusals_are_in_the_one_shape(server: str, case: str) -> None:
    status, headers, body = exchange(server, MALFORMED[case])
    assert status == 400 and headers["content-type"] == "application/json", (status, headers, body)
    shaped(body, "bad_request", "malformed HTTP request")
    alive(server)


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(server: str) -> None:
    with connect(server) as sock:
        t0 = time.monotonic()
        assert sock.recv(100) == b""  # closed, no answer owed
        assert TIMEOUT - 0.5 < time.monotonic() - t0 < TIMEOUT + 5
    alive(server)


@pytest.mark.parametrize("drip", [False, True])
def test_a_head_that_never_ends_gets_408_even_dripped(server: str, drip: bool) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\n")
        t0 = time.monotonic()
        if drip:  # a header byte every 0.5 s never resets the head's deadline
            sock.settimeout(0.5)
            for _ in range(int(TIMEOUT * 2) + 8):
                try:
                    sock.sendall(b"X")
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            sock.settimeout(TIMEOUT + 10)
        status, headers, body = answer(sock)
    assert status == 408 and headers.get("connection") == "close", (status, headers)
    shaped(json.loads(body), "timeout", "request head did not arrive")
    assert time.monotonic() - t0 < TIMEOUT + 5
    alive(server)


@pytest.mark.parametrize("path", ["/predict", "/infer"])
def test_a_body_that_never_comes_gets_408_and_frees_the_connection(server: str, path: str) -> None:
    kind = b"multipart/form-data; boundary=XyZ" if path == "/predict" else b"application/json"
    head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\nContent-Length: 5000\r\n\r\n" % (path.encode(), kind)
    t0 = time.monotonic()
    status, headers, body = exchange(server, head)
    assert status == 408 and TIMEOUT - 0.5 < time.monotonic() - t0 < TIMEOUT + 5, (status, body)
    shaped(body, "timeout", f"no bytes of the request body for {TIMEOUT:g} s")
    alive(server)


def test_stalled_uploads_cannot_keep_the_upload_slots_from_a_fast_client(server: str) -> None:
    stalls = [connect(server) for _ in range(int(SERVE["max_uploads"]))]
    try:
        for sock in stalls:  # each sends its head and the start of a body, then stalls: every slot taken
            sock.sendall(FORM_HEAD + b"--XyZ\r\n")
        time.sleep(0.2)
        busy = requests.post(f"{server}/predict", files={"audio": ("a.wav", wav_bytes(1.0))}, timeout=30)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
        shaped(busy.json(), "overloaded", "uploads are being received")
        time.sleep(1.2)  # now the stalls have been idle over a second: a fast upload takes the idlest one's slot
        fast = requests.post(f"{server}/predict", files={"audio": ("a.wav", wav_bytes(1.0))}, timeout=30)
        assert fast.status_code == 200, fast.text
        outcomes = []
        for sock in stalls:
            status, _, body = answer(sock)
            outcomes.append((status, json.loads(body)["error"] if body else ""))
        assert all(status == 408 for status, _ in outcomes), outcomes
        assert sum("dropped to make room" in message for _, message in outcomes) == 1, outcomes
    finally:
        for sock in stalls:
            sock.close()
    alive(server)


def test_body_less_connections_do_not_lock_the_service(server: str) -> None:
    """Heads without bodies hold no upload slot and no concurrency slot: 64 of them, and a normal client is served."""
    stalls = [connect(server) for _ in range(64)]
    try:
        for sock in stalls:
            sock.sendall(FORM_HEAD)
        time.sleep(0.3)
        for _ in range(3):
            resp = requests.post(f"{server}/predict", files={"audio": ("a.wav", wav_bytes(1.0))}, timeout=30)
            assert resp.status_code == 200, resp.text
        assert requests.get(f"{server}/demo/", timeout=10).status_code == 200
    finally:
        for sock in stalls:
            sock.close()
    alive(server)


def test_a_full_queue_answers_503_overloaded_with_retry_after(server: str) -> None:
    """Requests of 38 windows each (two 10 s clips; the queue holds 40): those that find it taken are refused."""
    files = [("audios", (f"{i}.wav", wav_bytes(9.9))) for i in range(2)]

    def send(_: int) -> requests.Response:
        return requests.post(f"{server}/predict_batch", files=files, timeout=60)

    seen = []
    for _ in range(5):
        with ThreadPoolExecutor(4) as pool:  # as many as the upload slots: the queue, not the slots, refuses
            seen += list(pool.map(send, range(4)))
        if any(r.status_code == 503 for r in seen):
            break
    assert {r.status_code for r in seen} <= {200, 503} and any(r.status_code == 200 for r in seen)
    refused = [r for r in seen if r.status_code == 503]
    assert refused, "4 concurrent requests of 38 windows each never found the 40-window queue taken"
    for r in refused:
        shaped(r.json(), "overloaded", "the service is at capacity")
        assert int(r.headers["retry-after"]) >= 1
    alive(server)


def test_infer_rows_are_shared_fairly_and_bounded_by_the_queue(server: str) -> None:
    def infer(n: int) -> requests.Response:
        return requests.post(f"{server}/infer", json={"features": np.zeros((n, *SHAPE)).tolist()}, timeout=60)

    with ThreadPoolExecutor(2) as pool:  # more rows than one model call takes, beside a one-row request
        many, one = pool.map(infer, [33, 1])
    assert many.status_code == 200 and len(many.json()) == 33, many.text[:300]
    assert one.status_code == 200 and len(one.json()) == 1
    shaped(infer(41).json(), "too_costly", "more than the service ever queues")
    form = requests.post(f"{server}/infer", files={"features": ("f.npy", b"\x93NUMPY")}, timeout=30)
    assert form.status_code == 400
    shaped(form.json(), "invalid_input", "takes application/json")
    alive(server)


def test_demo_redirect_is_relative_and_ranges_past_the_end_are_in_the_shape(server: str) -> None:
    resp = requests.get(f"{server}/demo", headers={"Host": "evil.example"}, allow_redirects=False, timeout=10)
    assert resp.status_code == 308 and resp.headers["location"] == "/demo/"
    past = requests.get(f"{server}/demo/index.html", headers={"Range": "bytes=99999999-"}, timeout=10)
    assert past.status_code == 416
    shaped(past.json(), "bad_range")
    alive(server)
