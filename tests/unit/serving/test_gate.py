"""The upload gate and the error shape in front of a real Starlette app that parses the form.

The inner app is what BentoML runs: Starlette's own multipart parser (`request.form()`), so
what these tests check is what reaches BentoML after the gate, byte for byte.
"""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ser.serving.codes import CODES
from ser.serving.errors import ErrorShape, reshape
from ser.serving.forms import safe_name
from ser.serving.gate import UploadGate


async def echo(request: Request) -> JSONResponse:
    form = await request.form()
    files = [(f.filename, (await f.read()).hex()) for _, f in form.multi_items()]
    return JSONResponse({"files": files, "names": request.scope["state"]["upload_names"]})


async def fails(request: Request) -> JSONResponse:
    return JSONResponse([{"error": "[too_long] audio lasts 75.0 s"}], status_code=413)  # what BentoML renders


def client() -> TestClient:
    routes = [Route(p, echo, methods=["POST"]) for p in ("/predict", "/batch")]
    app = Starlette(routes=[*routes, Route("/fails", fails, methods=["POST"])])
    gate = UploadGate(app, max_bytes=4000, slack=500, forms={"/predict": ("audio", 1), "/batch": ("audios", 3)})
    return TestClient(ErrorShape(gate))


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"b0undary") -> tuple[bytes, dict]:
    """A hand-made body from (Content-Disposition value, data) pairs: clients can send any bytes."""
    body = b"".join(b"--" + boundary + b"\r\nContent-Disposition: " + h + b"\r\n\r\n" + d + b"\r\n" for h, d in parts)
    return body + b"--" + boundary + b"--\r\n", {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


def post(path: str, parts: list[tuple[bytes, bytes]], **kw) -> tuple[int, dict]:
    body, headers = multipart(parts)
    resp = client().post(path, content=kw.get("body", body), headers={**headers, **kw.get("headers", {})})
    return resp.status_code, resp.json()


def audio(filename: bytes, data: bytes = b"RIFF....", field: bytes = b"audio") -> tuple[bytes, bytes]:
    return b'form-data; name="' + field + b'"; filename="' + filename + b'"', data


def test_a_long_or_odd_file_name_reaches_the_app_as_a_short_safe_one():
    data = b"--b0undary not the end\r\n\x00\xff" * 20  # bytes that look like a boundary stay data
    status, body = post("/predict", [audio(b"x" * 300 + b".WAV", data)])
    assert status == 200 and body["files"] == [["0.wav", data.hex()]]
    assert body["names"] == ["x" * 300 + ".WAV"]
    assert safe_name(2, "../../etc/passwd") == "2.audio" and safe_name(0, "a.tar.gz") == "0.gz"
    status, body = post("/predict", [audio("é😀 name.flac".encode())])
    assert status == 200 and body["files"][0][0] == "0.flac" and body["names"] == ["é😀 name.flac"]


@pytest.mark.parametrize(
    ("case", "parts", "status", "code", "words"),
    [
        ("bare CR in the file name", [audio(b"a\rb.wav")], 400, "bad_form", "malformed multipart"),
        ("second audio part", [audio(b"a.wav"), audio(b"b.wav")], 400, "too_many_files", "/predict_batch"),
        ("wrong field", [audio(b"a.wav", field=b"file")], 400, "bad_form", "unexpected form field `file`"),
        ("text field", [(b'form-data; name="audio"', b"http://x/y.wav")], 400, "bad_form", "holds text"),
        ("no name", [(b"form-data", b"x")], 400, "bad_form", "unexpected form field ``"),
        ("no part", [], 400, "bad_form", "no file"),
    ],
)
def test_a_bad_form_is_refused_with_its_code(case, parts, status, code, words):
    got, body = post("/predict", parts)
    assert (got, body["code"]) == (status, code), (case, body)
    assert words in body["error"] and set(body) == {"error", "code"}


def test_file_count_cap_of_the_batch_endpoint():
    assert post("/batch", [audio(f"{i}.wav".encode(), field=b"audios") for i in range(3)])[0] == 200
    status, body = post("/batch", [audio(f"{i}.wav".encode(), field=b"audios") for i in range(4)])
    assert status == 413 and body["code"] == "too_many_files" and "more than 3 files" in body["error"]


def test_byte_cap_on_the_declared_length_on_the_stream_and_on_lies():
    big = [audio(b"a.wav", b"\0" * 5000)]
    status, body = post("/predict", big)
    assert status == 413 and body["code"] == "too_large" and "4000" not in body["error"]
    status, body = post("/predict", [audio(b"a.wav")], headers={"content-length": "99999999999999999999"})
    assert status == 413 and body["code"] == "too_large"
    status, body = post("/predict", [audio(b"a.wav")], headers={"content-length": "-5"})
    assert status == 400 and body["code"] == "bad_form" and "Content-Length" in body["error"]

    def chunks():  # no Content-Length: a chunked stream, cut off once past the cap
        yield from (b"\0" * 1000 for _ in range(10))

    body_bytes, headers = multipart([audio(b"a.wav", b"")])
    resp = client().post("/predict", content=chunks(), headers=headers)
    assert resp.status_code == 413 and resp.json()["code"] == "too_large"


def test_unfinished_body_and_wrong_content_type():
    body, headers = multipart([audio(b"a.wav")])
    status, got = post("/predict", [], body=body[:-14], headers=headers)
    assert status == 400 and "closing boundary" in got["error"]
    status, got = post("/predict", [], body=b"{}", headers={"content-type": "application/json"})
    assert status == 400 and got["code"] == "bad_form" and "'application/json'" in got["error"]


def test_every_error_leaves_in_one_shape():
    c = client()
    for resp, code in [
        (c.post("/fails"), "too_long"),
        (c.get("/nowhere"), "not_found"),
        (c.get("/predict"), "method_not_allowed"),
    ]:
        assert set(resp.json()) == {"error", "code"} and resp.json()["code"] == code, resp.text
        assert resp.headers["content-type"] == "application/json"
    assert reshape(413, json.dumps([{"error": "[too_long] lasts 75 s"}]).encode()) == ("lasts 75 s", "too_long")
    pydantic = {"error": "1 validation error for Input", "detail": [{"loc": ["features"], "msg": "bad"}]}
    assert reshape(400, json.dumps(pydantic).encode()) == (
        "1 validation error for Input: features: bad",
        "invalid_input",
    )
    assert reshape(500, b"Internal Server Error") == ("Internal Server Error", "internal")
    assert all(400 <= status < 600 for status, _ in CODES.values())


def test_the_docs_list_every_error_code():
    from tests.conftest import REPO

    text = (REPO / "docs" / "serving.md").read_text()
    for code, (status, _) in CODES.items():
        assert f"| `{code}` | {status} |" in text, f"docs/serving.md does not list {code}"
