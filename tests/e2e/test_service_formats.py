"""The served decoder's formats, by content: wav, flac, ogg and mp3 answer whatever their name, every other container
(and raw bytes named like one) is refused, unseekable encodings answer at their real length, libsndfile's failures
come back in a client's words, limits are shown visibly over, and degenerate audio is noted.

Each case goes to the session's real `bentoml serve` (tests/e2e/conftest.py, the tiny model and its test-sized
limits: 2 MiB, 10 s); asserted as in test_service_hostile.py: status, the one error shape, words of the
message, no server path, `/readyz` alive after each.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import requests
import soundfile as sf

from tests.support import CLASSES, audio_bytes, float_wav, id3_tag, riff_wav, tone

pytestmark = pytest.mark.slow
MP3 = "MP3" in sf.available_formats()


def sample(fmt: str, subtype: str | None = None, seconds: float = 3.5) -> bytes:
    rate = 48000 if subtype == "OPUS" else 8000 if fmt == "XI" else 16000
    return audio_bytes(tone(seconds, rate, 2 if fmt == "PAF" else 1), rate, fmt, subtype)


# name -> (bytes, file name, (status, code, words of the message or of a note))
ALLOWED = [("WAV", "PCM_16"), ("WAVEX", None), ("FLAC", None), ("OGG", "VORBIS"), ("OGG", "OPUS")]
ALLOWED += [("MP3", None)] if MP3 else []
REFUSED = ["CAF", "W64", "RF64", "AU", "VOC", "NIST", "IRCAM", "SVX", "MAT5", "HTK", "PAF", "AIFF", "XI"]
CASES: dict[str, tuple[bytes, str, tuple[int, str | None, str | None]]] = {
    **{f"{fmt} {sub} named .au": (sample(fmt, sub), "x.au", (200, None, None)) for fmt, sub in ALLOWED},
    **{
        f"{fmt} named .wav": (sample(fmt, None, 0.5), "x.wav", (400, "unsupported_format", "not like wav"))
        for fmt in REFUSED[:-1]
    },
    "XI DPCM named .au": (sample("XI", "DPCM_16", 0.5), "x.au", (400, "unsupported_format", "an XI instrument file")),
    "AIFF-C named .aiff": (sample("AIFF", "ALAW", 0.5), "x.aiff", (400, "unsupported_format", "an AIFF-C file")),
    "text named notes.au": (b"my notes, not audio\n" * 60, "notes.au", (400, "unsupported_format", "look like text")),
    "random bytes named r.snd": (os.urandom(6000), "r.snd", (400, "unsupported_format", "not a readable audio file")),
    **{
        f"WAV {sub}, 3.5 s": (sample("WAV", sub), "x.wav", (200, None, None))
        for sub in ("GSM610", "G721_32", "IMA_ADPCM", "MS_ADPCM", "ALAW", "ULAW", "NMS_ADPCM_16")
    },
    "sample rate 0": (riff_wav(header_rate=0), "x.wav", (400, "bad_sample_rate", "sample rate 0 Hz is outside")),
    "two data chunks": (riff_wav(data_chunks=2), "x.wav", (400, "unsupported_format", "a WAV with 2 data chunks")),
    "ID3 tag only": (id3_tag(), "x.mp3", (400, "no_samples", "an MP3 with an ID3 tag and no audio frames")),
    "ID3 tag and FLAC": (id3_tag() + sample("FLAC"), "x.flac", (200, None, None)),
    "10 s + 1 frame": (
        audio_bytes(np.zeros((160001, 1), np.float32), 16000, "FLAC"),
        "x.flac",
        (413, "too_long", "lasts 10.0001 s (160001 frames at 16000 Hz); the limit is 10 s"),
    ),
    "a constant signal": (float_wav(np.full((16000, 1), 1.0)), "x.wav", (200, None, "the audio is a constant signal")),
    "one sample": (
        audio_bytes(np.full((1, 1), 0.1, np.float32)),
        "x.wav",
        (200, None, "only 0.0001 s of audio (1 sample), under 0.1 s: too short to judge"),
    ),
}


def test_the_battery_covers_the_issue():
    assert len(CASES) >= 30 and {"sample rate 0", "two data chunks", "ID3 tag only", "10 s + 1 frame"} <= set(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_format_by_content(server: str, case: str) -> None:
    data, name, (status, code, words) = CASES[case]
    resp = requests.post(f"{server}/predict", files={"audio": (name, data)}, timeout=60)
    text = resp.content.decode(errors="replace")
    assert resp.status_code == status, f"{case}: {resp.status_code} {text[:400]}"
    body = json.loads(text)
    if status == 200:
        assert body["label"] in CLASSES and abs(sum(body["probabilities"].values()) - 1) < 1e-3
        assert words is None or any(words in note for note in body["notes"]), f"{case}: {body['notes']}"
        if case.endswith("3.5 s") or "named .au" in case:
            assert 3.5 <= body["duration_s"] < 3.6, f"{case}: {body['duration_s']}"
    else:
        assert set(body) == {"error", "code"} and body["code"] == code, f"{case}: {text[:400]}"
        assert words is None or words in body["error"], f"{case}: {body['error']}"
        assert not re.search(r"/tmp|tmp\w{6}|Error opening|SF_INFO", body["error"]), f"{case}: {body['error']}"
    assert requests.get(f"{server}/readyz", timeout=10).status_code == 200
