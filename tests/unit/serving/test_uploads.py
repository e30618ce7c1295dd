"""The upload decoder: formats by content (an allow-list), unseekable encodings to their real end, libsndfile's
failures in a client's words, limits shown visibly over, and notes on degenerate audio. Real files only."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.serving.uploads import MIN_JUDGED_S, Clip, Limits, UploadError, check_length, decode_upload, over, probe
from tests.support import audio_bytes, float_wav, id3_tag, riff_wav, tone

MP3 = "MP3" in sf.available_formats()
ALLOWED = [("WAV", None), ("WAVEX", None), ("FLAC", None), ("OGG", "VORBIS"), ("OGG", "OPUS")]
ALLOWED += [("MP3", "MPEG_LAYER_III")] if MP3 else []
# Containers libsndfile reads that the service does not: each refused by its bytes whatever its name.
REFUSED = ["CAF", "W64", "RF64", "AU", "VOC", "NIST", "IRCAM", "SVX", "MAT5", "MAT4", "HTK", "PAF", "AIFF", "XI"]
REFUSED += ["AVR", "PVF", "SDS", "WVE", "MPC2K"]
# Encodings of a WAV: the unseekable ones (GSM 6.10, G.721, NMS ADPCM) were padded with zeros up to 60 s.
SUBTYPES = ["PCM_16", "PCM_U8", "FLOAT", "GSM610", "G721_32", "IMA_ADPCM", "MS_ADPCM", "ALAW", "ULAW", "NMS_ADPCM_16"]


def decode(tmp_path: Path, data: bytes, name: str = "clip.wav", limits: Limits | None = None) -> Clip:
    path = tmp_path / name
    path.write_bytes(data)
    return decode_upload(path, 16000, limits or Limits())


def refused(tmp_path: Path, data: bytes, name: str = "clip.wav", limits: Limits | None = None) -> UploadError:
    with pytest.raises(UploadError) as err:
        decode(tmp_path, data, name, limits)
    assert str(tmp_path) not in str(err.value) and "/tmp" not in str(err.value)
    return err.value


def sample(fmt: str, subtype: str | None = None, seconds: float = 3.5) -> bytes:
    rate = 48000 if subtype == "OPUS" else 8000 if fmt == "XI" else 16000
    channels = 2 if fmt == "PAF" else 1
    return audio_bytes(tone(seconds, rate, channels), rate, fmt, subtype)


@pytest.mark.parametrize(("fmt", "subtype"), ALLOWED)
@pytest.mark.parametrize("name", ["clip.au", "clip"])
def test_each_allowed_container_decodes_whatever_its_name(tmp_path, fmt, subtype, name):
    clip = decode(tmp_path, sample(fmt, subtype), name)
    assert abs(clip.duration_s - 3.5) < 0.05 and clip.wave.dtype == np.float32


@pytest.mark.parametrize("fmt", REFUSED)
@pytest.mark.parametrize("name", ["x.wav", "x.au", "x.aiff"])
def test_other_containers_are_refused_by_their_bytes(tmp_path, fmt, name):
    err = refused(tmp_path, sample(fmt, "DPCM_16" if fmt == "XI" else None, 0.5), name)
    assert err.code == "unsupported_format" and err.status == 400
    assert "not like wav, flac, ogg" in str(err) and "whatever the file's name" in str(err)


@pytest.mark.parametrize(
    ("fmt", "subtype", "looks_like"),
    [
        ("AIFF", "PCM_16", "an AIFF file"),
        ("AIFF", "ALAW", "an AIFF-C file"),
        ("CAF", None, "a CAF (Core Audio) file"),
        ("W64", None, "a Sony Wave64 (W64) file"),
        ("RF64", None, "an RF64 file (64-bit WAV)"),
        ("AU", None, "an AU (Sun/NeXT) file"),
        ("IRCAM", None, "an IRCAM file"),
        ("HTK", None, "no known format"),
    ],
)
def test_the_refusal_names_what_the_bytes_look_like(tmp_path, fmt, subtype, looks_like):
    assert f"its bytes look like {looks_like}, not like" in str(refused(tmp_path, sample(fmt, subtype, 0.2)))


@pytest.mark.parametrize(
    ("data", "name", "looks_like"),
    [
        (b"hello, these are my notes\n" * 40, "notes.au", "text"),
        (os.urandom(4000), "r.snd", "no known format"),
        (os.urandom(4000), "r.raw", "no known format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 500, "x.wav", "a PNG image"),
        (id3_tag(10) + b"\x07" * 3000, "x.mp3", "an ID3 tag followed by no known format"),
        (id3_tag(10) + riff_wav(0.2), "x.wav", "an ID3 tag followed by a WAV file"),
    ],
)
def test_raw_bytes_get_no_answer_from_their_extension(tmp_path, data, name, looks_like):
    err = refused(tmp_path, data, name)
    assert err.code == "unsupported_format" and f"look like {looks_like}," in str(err), str(err)
    assert "not a readable audio file" in str(err) and "expected wav" in str(err)


@pytest.mark.skipif(not MP3, reason="this libsndfile has no MP3")
def test_id3_tags_before_mp3_or_flac_are_skipped_and_alone_hold_no_samples(tmp_path):
    assert abs(decode(tmp_path, id3_tag() + sample("MP3", None), "a.mp3").duration_s - 3.5) < 0.05
    assert abs(decode(tmp_path, id3_tag() + sample("FLAC"), "a.flac").duration_s - 3.5) < 1e-3
    err = refused(tmp_path, id3_tag() + id3_tag(30) + sample("FLAC"), "a.flac")  # libsndfile skips one tag only
    assert err.code == "unsupported_format" and "an ID3 tag followed by another ID3 tag" in str(err)
    for name in ("a.mp3", "a.au", "a.wav"):
        err = refused(tmp_path, id3_tag(), name)
        assert err.code == "no_samples" and "an MP3 with an ID3 tag and no audio frames" in str(err), str(err)
    assert refused(tmp_path, id3_tag() + b"TAG" + b"\0" * 125).code == "no_samples"  # and an ID3v1 tag


def test_an_mpeg_frame_header_that_does_not_decode_is_refused_in_words(tmp_path):
    err = refused(tmp_path, b"\xff\xfb\x90\x00" + b"\x55" * 3000, "x.mp3")
    assert err.code == "unsupported_format" and "an MPEG audio stream that cannot be read" in str(err)
    assert "possibly a pipe" not in str(err)


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_every_wav_encoding_decodes_to_its_real_length(tmp_path, subtype):
    data = sample("WAV", subtype)
    clip = decode(tmp_path, data)
    assert 3.5 <= clip.duration_s < 3.6, clip.duration_s  # block codecs round up to a whole block
    assert clip.wave.shape[0] == sf.info(io.BytesIO(data)).frames  # what the header says, no padding


def test_an_unseekable_clip_is_charged_its_real_length_only(tmp_path):
    limits = Limits(max_samples_per_file=60_000, max_samples_per_request=60_000)
    assert decode(tmp_path, sample("WAV", "GSM610"), limits=limits).duration_s < 3.6
    err = refused(tmp_path, sample("WAV", "GSM610", 4.0), limits=limits)
    assert err.code == "too_costly"


def test_libsndfile_failures_become_the_right_codes(tmp_path):
    err = refused(tmp_path, riff_wav(header_rate=0))
    assert err.code == "bad_sample_rate" and str(err) == "sample rate 0 Hz is outside the supported 4000-192000 Hz"
    err = refused(tmp_path, riff_wav(data_chunks=2))
    assert err.code == "unsupported_format" and "a WAV with 2 data chunks; expected exactly one" in str(err)
    flac = bytearray(sample("FLAC"))
    flac[18:21] = bytes([0, 0, flac[20] & 0x0F])  # STREAMINFO's sample rate: 20 bits
    assert refused(tmp_path, bytes(flac), "a.flac").code == "bad_sample_rate"
    for data in (riff_wav(), riff_wav(rate=8000)):
        assert decode(tmp_path, data).duration_s == pytest.approx(0.5)
    err = refused(tmp_path, b"RIFF\x10\0\0\0WAVEfmt " + b"\x07" * 300)
    assert err.code == "unsupported_format" and "a WAV file that cannot be read (" in str(err)
    assert "SF_INFO" not in str(err) and "Error opening" not in str(err)


def test_a_clip_just_over_the_limit_says_a_number_visibly_over_it(tmp_path):
    err = refused(tmp_path, audio_bytes(np.zeros((960001, 1), np.float32), 16000, "FLAC"), "a.flac")
    assert err.code == "too_long" and "lasts 60.0001 s (960001 frames at 16000 Hz); the limit is 60 s" in str(err)
    with pytest.raises(UploadError, match=r"lasts 61.0 s \(976000 frames"):
        check_length(976000, 16000, 1, Limits())
    with pytest.raises(UploadError, match=r"is 5.760002 M samples to decode; the limit is 5.76 M"):
        check_length(2_880_001, 48000, 2, Limits(max_duration_s=61))
    assert over(60.0000625, 60) == "60.0001" and over(60.4, 60) == "60.4" and over(2.0000001, 2) == "2.0000001"
    assert over(5.760002, 5.76, 2) == "5.760002" and over(5.9, 5.76, 2) == "5.90"


def test_a_constant_signal_and_a_very_short_clip_are_noted(tmp_path):
    for wave in (np.full((16000, 1), 1.0), np.full((16000, 1), 0.25), np.full((16000, 2), -0.5)):
        clip = decode(tmp_path, float_wav(wave))
        assert "the audio is a constant signal (no sound to judge); the label means nothing" in clip.notes
    one = decode(tmp_path, audio_bytes(np.full((1, 1), 0.1, np.float32)))
    assert one.notes == ["only 0.0001 s of audio (1 sample), under 0.1 s: too short to judge; the label means little"]
    short = decode(tmp_path, audio_bytes(tone(MIN_JUDGED_S * 0.9)))
    assert any("too short to judge" in n for n in short.notes) and not any("constant" in n for n in short.notes)
    silent = decode(tmp_path, audio_bytes(np.zeros((16000, 1), np.float32)))
    assert any("no speech detected" in n for n in silent.notes) and not any("constant" in n for n in silent.notes)
    plain = decode(tmp_path, audio_bytes(tone(1.0)))
    assert plain.notes == [] and not any("constant" in n for n in decode(tmp_path, float_wav(np.sign(tone(1.0)))).notes)


def test_probe_reads_the_header_only_and_agrees_with_the_bytes(tmp_path):
    path = tmp_path / "a.au"
    path.write_bytes(sample("WAV", "GSM610"))
    info = probe(path, Limits())
    assert info.format == "WAV" and info.subtype == "GSM610" and info.samplerate == 16000
