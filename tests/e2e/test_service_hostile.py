"""The service against a hostile client: every odd input gets a 4xx in the one shape or a valid answer.

Each case goes to the session's real `bentoml serve` (tests/e2e/conftest.py, the tiny model and
its test-sized limits: 2 MiB, 10 s, 8 files, 1 M samples a file, 2 M a request). A case
asserts the status, the stable error code and words of the message; a 200 must hold no
null/NaN anywhere; `/readyz` must answer after every case; the session's log must hold no
traceback (conftest).
"""

from __future__ import annotations

import http.client
import json
import math
import re
from collections.abc import Callable
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

from tests.support import (
    CLASSES,
    PEAK,
    SERVE,
    audio_bytes,
    flac_of_unknown_length,
    float_wav,
    silent_flac,
    streamed_wav,
    tone,
    wav_bytes,
)

pytestmark = pytest.mark.slow
Send = Callable[[str], requests.Response]


def upload(data: bytes | Callable[[], bytes], name: str = "clip.wav", field: str = "audio") -> Send:
    return lambda url: requests.post(
        f"{url}/predict", files={field: (name, data() if callable(data) else data)}, timeout=60
    )


def batch(files: list[tuple[str, bytes]], route: str = "/predict_batch") -> Send:
    return lambda url: requests.post(f"{url}{route}", files=[("audios", f) for f in files], timeout=60)


def speaker(files: list[tuple[str, bytes]]) -> Send:
    return batch(files, "/predict_speaker")


def raw(method: str, path: str, headers: dict, body: bytes = b"") -> Send:
    """A request written by hand (lying headers, no body at all)."""

    def send(url: str) -> requests.Response:
        u = urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.putrequest(method, path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        reply = conn.getresponse()
        resp = requests.Response()
        resp.status_code, resp._content = reply.status, reply.read()
        conn.close()
        return resp

    return send


def form(parts: list[bytes], path: str = "/predict") -> Send:
    body = b"".join(b"--XyZ\r\n" + p + b"\r\n" for p in parts) + b"--XyZ--\r\n"
    return raw(
        "POST", path, {"Content-Type": "multipart/form-data; boundary=XyZ", "Content-Length": str(len(body))}, body
    )


def chunked_over_cap(url: str) -> requests.Response:
    head = b'--XyZ\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
    body = iter([head, *(b"\0" * 2**20 for _ in range(3))])
    return requests.post(f"{url}/predict", data=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})


def infer(features: object) -> Send:
    return lambda url: requests.post(f"{url}/infer", json={"features": features}, timeout=60)


SHAPE = (63, 16)  # the tiny model's input: 1 s at hop 256, 16 mels
OK = (200, None, None)
CASES: dict[str, tuple[Send, tuple[int, str | None, str | None]]] = {
    # what the file holds
    "empty file": (upload(b""), (400, "empty_upload", "empty upload")),
    "text, not audio": (upload(b"hello " * 200), (400, "unsupported_format", "not a readable audio file")),
    "a PNG": (upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 500, "x.png"), (400, "unsupported_format", "expected wav")),
    "RIFF header and noise": (upload(b"RIFF\x10\0\0\0WAVEfmt " + b"\x07" * 300), (400, "unsupported_format", None)),
    "fLaC magic only": (upload(b"fLaC", "a.flac"), (400, "unsupported_format", None)),
    "truncated wav": (upload(lambda: wav_bytes(1.0)[:20000]), (400, "truncated", "truncated")),
    "truncated flac": (upload(lambda: audio_bytes(tone(1.0), 16000, "FLAC")[:3000]), (400, "truncated", None)),
    "zero samples": (upload(lambda: audio_bytes(np.zeros((0, 1), np.float32))), (400, "no_samples", "no samples")),
    "NaN sample": (
        upload(lambda: float_wav(np.where(np.arange(16000)[:, None] == 9, np.nan, tone(1.0)))),
        (400, "non_finite", "NaN"),
    ),
    "infinite sample": (
        upload(lambda: float_wav(np.where(np.arange(16000)[:, None] == 9, np.inf, tone(1.0)))),
        (400, "non_finite", None),
    ),
    "1 kHz rate": (upload(lambda: wav_bytes(1.0, rate=1000)), (400, "bad_sample_rate", "1000 Hz")),
    "400 kHz rate": (upload(lambda: audio_bytes(tone(0.1), 400000)), (400, "bad_sample_rate", "400000 Hz")),
    "12 channels": (upload(lambda: wav_bytes(0.2, channels=12)), (400, "bad_channels", "12 channels")),
    "11 s, over the duration cap": (upload(lambda: wav_bytes(11.0)), (413, "too_long", "the limit is 10 s")),
    "an hour of silence in 180 KB": (upload(lambda: silent_flac(3600), "h.flac"), (413, "too_long", "3600.0 s")),
    "unknown-length FLAC, 2 s": (upload(lambda: flac_of_unknown_length(2.0), "s.flac"), OK),
    "unknown-length FLAC, 12 s": (
        upload(lambda: flac_of_unknown_length(12.0), "s.flac"),
        (413, "too_long", "lasts 12.0 s"),
    ),
    "8 ch x 192 kHz x 9 s of silence": (
        upload(lambda: audio_bytes(np.zeros((192000 * 9, 8), np.float32), 192000, "FLAC"), "q.flac"),
        (413, "too_costly", "M samples to decode"),
    ),
    "peak 3e17": (upload(lambda: float_wav(PEAK)), OK),
    "peak at float32 max, stereo": (upload(lambda: float_wav(np.full((16000, 2), 3.4e38, np.float32))), OK),
    "denormal samples": (upload(lambda: float_wav(np.full((16000, 1), 1e-42, np.float32))), OK),
    "silence": (upload(lambda: audio_bytes(np.zeros((16000, 1), np.float32))), OK),
    "one sample": (upload(lambda: audio_bytes(np.full((1, 1), 0.1, np.float32))), OK),
    "24-bit PCM": (upload(lambda: audio_bytes(tone(1.0), 16000, "WAV", "PCM_24")), OK),
    "8-bit unsigned": (upload(lambda: audio_bytes(tone(1.0), 16000, "WAV", "PCM_U8")), OK),
    "ogg vorbis 44.1 kHz": (upload(lambda: audio_bytes(tone(1.5, 44100), 44100, "OGG", "VORBIS"), "a.ogg"), OK),
    "4 kHz, the lowest rate": (upload(lambda: wav_bytes(1.0, rate=4000)), OK),
    "192 kHz, the highest rate": (upload(lambda: wav_bytes(0.5, rate=192000)), OK),
    "full-scale square wave": (upload(lambda: float_wav(np.sign(tone(1.0)))), OK),
    "streamed WAV sizes": (upload(lambda: streamed_wav(1.0)), OK),
    # the multipart envelope
    "300-byte file name": (upload(lambda: wav_bytes(1.0), "n" * 296 + ".wav"), OK),
    "file name with a bare CR": (
        form([b'Content-Disposition: form-data; name="audio"; filename="a\rb.wav"\r\n\r\nxx']),
        (400, "bad_form", None),
    ),
    "unicode and ../ in the name": (upload(lambda: wav_bytes(1.0), "../../é 😀.wav"), OK),
    "no extension": (upload(lambda: wav_bytes(1.0), "clip"), OK),
    "two audio parts": (
        lambda url: requests.post(f"{url}/predict", files=[("audio", ("a.wav", wav_bytes(1.0)))] * 2, timeout=60),
        (400, "too_many_files", "/predict_batch"),
    ),
    "text instead of a file": (
        lambda url: requests.post(f"{url}/predict", files={"audio": (None, "http://127.0.0.1:9/x.wav")}, timeout=9),
        (400, "bad_form", "holds text"),
    ),
    "wrong field": (upload(lambda: wav_bytes(1.0), field="file"), (400, "bad_form", "`file`")),
    "JSON body": (
        lambda url: requests.post(f"{url}/predict", json={"audio": "x"}, timeout=9),
        (400, "bad_form", "multipart/form-data"),
    ),
    "no body": (lambda url: requests.post(f"{url}/predict", timeout=9), (400, "bad_form", None)),
    "multipart without a boundary": (
        raw("POST", "/predict", {"Content-Type": "multipart/form-data", "Content-Length": "0"}),
        (400, "bad_form", None),
    ),
    "no closing boundary": (
        raw(
            "POST",
            "/predict",
            {"Content-Type": "multipart/form-data; boundary=XyZ", "Content-Length": "80"},
            b'--XyZ\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\nabcdefgh',
        ),
        (400, "bad_form", "closing boundary"),
    ),
    "a 10 KB part header": (
        form([b'Content-Disposition: form-data; name="audio"; filename="' + b"a" * 10000 + b'"\r\n\r\nxx']),
        (400, "bad_form", "header"),
    ),
    "Content-Length of 10 GB, no body": (
        raw(
            "POST", "/predict", {"Content-Type": "multipart/form-data; boundary=XyZ", "Content-Length": str(10 * 2**30)}
        ),
        (413, "too_large", "upload cap"),
    ),
    "chunked body over the cap": (chunked_over_cap, (413, "too_large", "upload cap")),
    # the batch endpoint
    "9 files in a batch": (
        batch([(f"{i}.wav", wav_bytes(0.2)) for i in range(9)]),
        (413, "too_many_files", "more than 8"),
    ),
    "1001 tiny parts": (batch([(f"{i}.wav", b"x") for i in range(1001)]), (413, "too_many_files", None)),
    "a bad file among good ones": (
        batch([("good.wav", wav_bytes(0.5)), ("bad one.wav", b"junk" * 40)]),
        (400, "unsupported_format", "file 1 ('bad one.wav')"),
    ),
    "batch over the sample budget": (
        batch([(f"{i}.flac", audio_bytes(np.zeros((48000 * 9, 2), np.float32), 48000, "FLAC")) for i in range(3)]),
        (413, "too_costly", "the batch"),
    ),
    # the enrolment endpoint: the batch's gate, plus its minimum of clips
    "/predict_speaker, 4 odd clips": (
        speaker([("silence.wav", audio_bytes(np.zeros((16000, 1), np.float32))), ("peak.wav", float_wav(PEAK))] * 2),
        OK,
    ),
    "/predict_speaker, 3 clips": (
        speaker([(f"{i}.wav", wav_bytes(0.5)) for i in range(3)]),
        (400, "too_few_clips", "at least 4 clips"),
    ),
    "/predict_speaker, 9 clips": (
        speaker([(f"{i}.wav", wav_bytes(0.2)) for i in range(9)]),
        (413, "too_many_files", None),
    ),
    "/predict_speaker, a bad file": (
        speaker([*((f"{i}.wav", wav_bytes(0.5)) for i in range(3)), ("bad.wav", b"junk" * 40)]),
        (400, "unsupported_format", "file 3 ('bad.wav')"),
    ),
    "/predict_speaker, a file field of text": (
        lambda url: requests.post(f"{url}/predict_speaker", files={"audios": (None, "x")}, timeout=9),
        (400, "bad_form", None),
    ),
    # other routes and methods
    "GET /predict": (lambda url: requests.get(f"{url}/predict", timeout=9), (405, "method_not_allowed", None)),
    "unknown route": (lambda url: requests.post(f"{url}/nowhere", timeout=9), (404, "not_found", None)),
    "/infer, wrong shape": (
        infer([[[1.0, 2.0]]]),
        (400, "invalid_input", "cannot reshape array of size 2 into shape (63,16)"),
    ),
    "/infer, a string": (infer("not an array"), (400, "invalid_input", None)),
    "/infer, huge and NaN-like numbers": (infer(np.full((1, *SHAPE), 1e308).tolist()), OK),
}


def no_null(value: object) -> bool:
    if isinstance(value, dict):
        return all(no_null(v) for v in value.values())
    if isinstance(value, list):
        return all(no_null(v) for v in value)
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def test_the_battery_is_large_and_the_limits_are_the_test_ones():
    assert len(CASES) >= 40
    assert SERVE["max_upload_mb"] == 2 and SERVE["max_batch_files"] == 8


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input(server: str, case: str) -> None:
    send, (status, code, words) = CASES[case]
    resp = send(server)
    text = resp.content.decode(errors="replace")
    assert resp.status_code == status, f"{case}: {resp.status_code} {text[:400]}"
    body = json.loads(text)
    if status == 200:
        assert no_null(body), f"{case}: a null or NaN in {text[:400]}"
        answers = body if isinstance(body, list) and body and isinstance(body[0], dict) else [body]
        for answer in answers + (body.get("clips", []) if isinstance(body, dict) else []):
            if isinstance(answer, dict):
                assert answer["label"] in CLASSES and abs(sum(answer["probabilities"].values()) - 1) < 1e-3
    else:
        assert set(body) == {"error", "code"} and body["code"] == code, f"{case}: {text[:400]}"
        assert words is None or words in body["error"], f"{case}: {body['error']}"
        assert not re.search(r"/tmp|tmp\w{6}", body["error"]), f"{case}: a server path in {body['error']}"
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200


def test_what_the_answers_say_about_odd_audio(server: str) -> None:
    scaled = upload(lambda: float_wav(PEAK))(server).json()
    assert any("scaled down" in n for n in scaled["notes"]), scaled["notes"]
    silent = upload(lambda: audio_bytes(np.zeros((16000, 1), np.float32)))(server).json()
    assert any("no speech detected" in n for n in silent["notes"]), silent["notes"]
    short = upload(lambda: wav_bytes(0.6))(server).json()
    assert short["windows"][0]["start_s"] == 0.0 and not any("no speech" in n for n in short["notes"])


def test_client_errors_are_one_log_line_each(served, server: str) -> None:
    before = served.full_log.count("client error")
    assert upload(lambda: wav_bytes(11.0))(server).status_code == 413
    assert raw("POST", "/predict", {"Content-Type": "text/plain", "Content-Length": "0"})(server).status_code == 400
    log = served.full_log
    assert log.count("client error") == before + 2, log[-2000:]
    assert "client error 413 too_long on POST /predict" in log and "Traceback" not in log
