"""Container sniffing: the magic bytes name the container, and libsndfile must read what they name."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from ser.serving.sniff import disagreement, header_fields, mpeg_frame, refusal, sniff
from tests.support import audio_bytes, id3_tag, riff_wav, tone


def sniffed(data: bytes):
    return sniff(io.BytesIO(data))


def test_the_four_containers_and_where_they_start():
    assert (sniffed(riff_wav()).container, sniffed(riff_wav()).offset) == ("WAV", 0)
    flac = audio_bytes(tone(0.2), 16000, "FLAC")
    assert sniffed(flac).container == "FLAC" and sniffed(id3_tag(50) + flac).offset == 60
    assert sniffed(audio_bytes(tone(0.2), 16000, "OGG", "VORBIS")).container == "OGG"
    assert sniffed(b"\xff\xfb\x90\x64" + b"\0" * 100).container == "MP3"
    assert refusal(sniffed(riff_wav())) is None


def test_mpeg_frame_headers_are_checked_not_just_their_sync():
    assert mpeg_frame(b"\xff\xfb\x90\x64") and mpeg_frame(b"\xff\xf3\x88\xc4")
    assert not mpeg_frame(b"\xff\xf1\x50\x80")  # layer 0: an AAC ADTS header
    assert not mpeg_frame(b"\xff\xfb\xf0\x00")  # bitrate index 15
    assert not mpeg_frame(b"\xff\xfb\x9c\x00")  # sample rate index 3
    assert sniffed(b"\xff\xf1\x50\x80" + b"\0" * 60).looks_like == "an AAC (ADTS) stream"


def test_a_file_libsndfile_reads_as_another_container_is_refused():
    aiff = sf.info(io.BytesIO(audio_bytes(tone(0.2), 16000, "AIFF")))
    message, code = disagreement(sniffed(riff_wav()), aiff.format) or ("", "")
    assert code == "unsupported_format" and "look like a WAV file but it decodes as AIFF" in message
    assert disagreement(sniffed(audio_bytes(tone(0.2), 16000, "WAVEX")), "WAVEX") is None


def test_header_fields_of_a_wav_and_a_flac():
    fields = header_fields(io.BytesIO(riff_wav(0.1, data_chunks=3, header_rate=0)), sniffed(riff_wav()))
    assert (fields.rate, fields.channels, fields.data_chunks) == (0, 1, 3)
    flac = id3_tag(20) + audio_bytes(np.zeros((100, 2), np.float32), 44100, "FLAC")
    fields = header_fields(io.BytesIO(flac), sniffed(flac))
    assert (fields.rate, fields.channels) == (44100, 2)
