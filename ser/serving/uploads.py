"""Safe decoding of uploaded audio for the service: limits first, then samples, under a budget.

Every check that can run without decoding does so first: the file size against the upload
cap, the container by its bytes, never its name (`ser.serving.sniff`: wav, flac, ogg, mp3 only),
then the header (`soundfile.info`, which must read the container the bytes start like) for sample
rate, channels, duration and the decoding cost in samples (frames x channels) against
`max_samples_per_file`. libsndfile gets an open file, not a path: it has no name to guess a format from.
A header may not know its length (a streamed FLAC writes total_samples = 0): then decoding itself stops at the
duration cap or the sample budget, whichever comes first (a FLAC's length is read off its last
frame header, `ser.serving.flac_length`, as libsndfile cannot decode such a file's last block).
Decoding reads block by block until the real end (unseekable encodings such as GSM 6.10 included),
downmixing in float64 as it goes, and charges a `SampleBudget` shared by the whole request.
Finite samples above full scale (float files) are scaled down; a silent, constant or very short clip is noted.
Errors are `UploadError`s with a stable code (`ser.serving.codes.CODES`) and an HTTP status.

    limits = Limits.from_serve({"max_upload_mb": 20, "max_duration_s": 60})
    clip = decode_upload(Path("clip.flac"), 16000, limits)
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.audio import AudioError, resample
from ser.serving.codes import CODES
from ser.serving.flac_length import total_candidates, with_total
from ser.serving.sniff import FORMATS, channels_refusal, disagreement, rate_refusal, refusal, sniff, unreadable

BLOCK_FRAMES = 1 << 16
UNKNOWN_FRAMES = 1 << 62  # libsndfile reports an unknown length as the largest frame count
SILENT_DBFS = -60.0  # loudest 25 ms frame below this: no speech to score
MIN_JUDGED_S = 0.1  # less audio than this is too short to judge
CONSTANT_SPAN = 2.0**-16  # samples that vary by less than this (a 16-bit step): a constant signal
# libsndfile's header log says "data : 112000 (should be 100795)" when a WAV-like file was cut short.
_DATA_LENGTH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMED = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # sizes written by encoders that stream and never patch the header


class UploadError(AudioError):
    """An upload the service refuses: a stable `code` and the HTTP `status` to answer with."""

    def __init__(self, message: str, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code, self.status = code, CODES[code][0]


@dataclass(frozen=True)
class Limits:
    """Upload limits (the `serve` section of params.yaml, stored in the model's metadata)."""

    max_upload_bytes: int = 20 * 2**20
    max_duration_s: float = 60.0
    max_samples_per_file: int = 5_760_000
    max_samples_per_request: int = 23_040_000

    @classmethod
    def from_serve(cls, serve: dict) -> Limits:
        """Limits from a `serve` mapping; missing keys keep the defaults."""
        return cls(
            max_upload_bytes=int(float(serve.get("max_upload_mb", 20)) * 2**20),
            max_duration_s=float(serve.get("max_duration_s", 60.0)),
            max_samples_per_file=int(serve.get("max_samples_per_file", cls.max_samples_per_file)),
            max_samples_per_request=int(serve.get("max_samples_per_request", cls.max_samples_per_request)),
        )


class SampleBudget:
    """Decoded samples (frames x channels) a request may still cost."""

    def __init__(self, samples: int) -> None:
        self.cap, self.left = samples, samples

    def refusal(self) -> UploadError:
        """The error for a request over its budget."""
        return UploadError(
            f"the request would decode more than {self.cap / 1e6:.1f} M samples "
            "(seconds x sample rate x channels, serve.max_samples_per_request); send fewer or smaller files",
            "too_costly",
        )

    def take(self, samples: int) -> None:
        """Charge `samples`; refuse (too_costly) when the request's budget is spent."""
        if samples > self.left:
            raise self.refusal()
        self.left -= samples


@dataclass
class Clip:
    """A decoded upload: mono float32 at the model's rate, and what was done to it."""

    wave: np.ndarray
    source_rate: int
    channels: int
    duration_s: float
    notes: list[str] = field(default_factory=list)


def check_size(size: int, limits: Limits) -> None:
    """Refuse an empty upload (400) or one over the cap (413)."""
    if size <= 0:
        raise UploadError(f"empty upload: expected an audio file ({FORMATS})", "empty_upload")
    if size > limits.max_upload_bytes:
        cap = limits.max_upload_bytes / 2**20
        raise UploadError(f"upload of {over(size / 2**20, cap)} MiB is over the {cap:g} MiB upload cap", "too_large")


def probe(path: Path, limits: Limits) -> sf._SoundFileInfo:
    """Header checks: the container by content, sample rate, channels, duration and cost, before decoding."""
    check_size(Path(path).stat().st_size, limits)
    with open(path, "rb") as f:  # an open file: libsndfile sees no name to guess a format from
        found = sniff(f)
        if bad := refusal(found):
            raise UploadError(*bad)
        f.seek(0)
        try:
            info = sf.info(f)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
            raise UploadError(*unreadable(err, found, f)) from None
    if bad := disagreement(found, info.format) or rate_refusal(info.samplerate) or channels_refusal(info.channels):
        raise UploadError(*bad)
    if info.frames < UNKNOWN_FRAMES:
        check_length(info.frames, info.samplerate, info.channels, limits)
    cut = _DATA_LENGTH.search(info.extra_info or "")
    if cut and int(cut.group(1)) > int(cut.group(2)) and int(cut.group(1)) not in _STREAMED:
        raise UploadError(
            f"the file is truncated: its header announces {cut.group(1)} bytes of audio, it holds "
            f"{cut.group(2)}; expected a complete {FORMATS} file",
            "truncated",
        )
    return info


def check_length(frames: int, rate: int, channels: int, limits: Limits) -> None:
    """Refuse a known length over the duration cap (too_long) or the per-file sample budget (too_costly)."""
    seconds = frames / rate
    if seconds > limits.max_duration_s:
        cap = limits.max_duration_s
        raise UploadError(
            f"audio lasts {over(seconds, cap)} s ({frames} frames at {rate} Hz); the limit is {cap:g} s "
            "(send a shorter clip)",
            "too_long",
        )
    if frames * channels > limits.max_samples_per_file:
        raise _too_costly(seconds, rate, channels, limits)


def sources(path: Path, info: sf._SoundFileInfo, limits: Limits) -> Iterator[tuple[Path | io.BytesIO, int]]:
    """What to decode, with its frame count: the file itself, or for a FLAC that does not know its
    length, copies that state each length its last frame headers give (`ser.serving.flac_length`)."""
    if info.frames < UNKNOWN_FRAMES or info.format != "FLAC":
        yield path, info.frames
        return
    data = Path(path).read_bytes()
    data = data[sniff(io.BytesIO(data)).offset :]  # a FLAC behind ID3v2 tags
    for total in itertools.islice(total_candidates(data), 4):
        check_length(total, info.samplerate, info.channels, limits)
        yield io.BytesIO(with_total(data, total)), total


def header_cost(info: sf._SoundFileInfo) -> int:
    """Samples the header says decoding costs (0 when it does not know its length)."""
    return 0 if info.frames >= UNKNOWN_FRAMES else int(info.frames * info.channels)


def _too_costly(seconds: float, rate: int, channels: int, limits: Limits) -> UploadError:
    cost, cap = seconds * rate * channels / 1e6, limits.max_samples_per_file / 1e6
    return UploadError(
        f"{seconds:.1f} s x {rate} Hz x {channels} channels is {over(cost, cap, 2)} M samples to decode; the limit is "
        f"{cap:.2f} M per file (serve.max_samples_per_file, e.g. "
        f"{limits.max_samples_per_file / 96000:.0f} s of 48 kHz stereo)",
        "too_costly",
    )


def over(value: float, limit: float, least: int = 1) -> str:
    """`value` with `least` decimals, or as many more as show it above `limit` (60.0001, not 60.0)."""
    digits = next((d for d in range(least, 10) if round(value, d) > limit), 10)
    return f"{value:.{digits}f}".rstrip("0") if digits > least else f"{value:.{least}f}"


def read_mono(source: Path | io.BytesIO, max_frames: int, budget: SampleBudget | None = None) -> np.ndarray:
    """Decode at most `max_frames + 1` frames block by block, averaging channels (in float64) as it goes.

    Reads until libsndfile returns no more frames: `SoundFile.blocks` pads an unseekable file (GSM 6.10,
    G.721) with zeros up to the frames asked for, which would count as audio and be charged to the budget.
    """
    blocks, total = [], 0
    opened = open(source, "rb") if isinstance(source, Path) else contextlib.nullcontext(source)  # noqa: SIM115
    try:
        with opened as fh, sf.SoundFile(fh) as f:
            while total <= max_frames:
                block = f.read(min(BLOCK_FRAMES, max_frames + 1 - total), dtype="float64", always_2d=True)
                if not block.shape[0]:
                    break
                if budget is not None:
                    budget.take(block.size)
                blocks.append(block.mean(axis=1).astype(np.float32))
                total += block.shape[0]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise UploadError(
            f"cannot decode the audio after {total} frames ({err}); the file is truncated or "
            f"corrupt, expected a complete {FORMATS} file",
            "truncated",
        ) from None
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def decode_upload(
    path: Path,
    sample_rate: int,
    limits: Limits,
    budget: SampleBudget | None = None,
    info: sf._SoundFileInfo | None = None,
) -> Clip:
    """Check and decode an uploaded file to mono float32 at `sample_rate` (`info`: its `probe`, if done).

    Raises:
        UploadError: 413 for the size, duration and sample caps, 400 for everything else.
    """
    info = info or probe(Path(path), limits)
    by_duration = int(limits.max_duration_s * info.samplerate)
    max_frames = min(by_duration, limits.max_samples_per_file // info.channels)
    budget = budget or SampleBudget(limits.max_samples_per_request)
    wave, frames, failure = None, info.frames, None
    for source, candidate in sources(Path(path), info, limits):
        try:
            wave, frames = read_mono(source, max_frames, budget), candidate
            break
        except UploadError as err:  # a FLAC length candidate that was a false frame sync: try the next
            failure = err
    if wave is None:
        raise failure or UploadError(
            f"a FLAC of unknown length with no readable frame; expected {FORMATS}", "truncated"
        )
    if wave.shape[0] > max_frames:  # the header understated the length, or did not know it
        if max_frames == by_duration:
            cap = limits.max_duration_s
            raise UploadError(f"audio lasts more than {cap:g} s, the limit (send a shorter clip)", "too_long")
        raise _too_costly(wave.shape[0] / info.samplerate, info.samplerate, info.channels, limits)
    known = frames < UNKNOWN_FRAMES and info.format != "MP3"  # MP3 frame counts are estimates
    if known and wave.shape[0] < frames:
        raise UploadError(
            f"the file is truncated: decoded {wave.shape[0]} of the {frames} frames its header "
            f"announces; expected a complete {FORMATS} file",
            "truncated",
        )
    if wave.shape[0] == 0:
        raise UploadError("the audio holds no samples (zero length); expected at least one sample", "no_samples")
    if not np.isfinite(wave).all():
        raise UploadError("the audio holds NaN or infinite samples; expected finite values", "non_finite")
    n, seconds = wave.shape[0], wave.shape[0] / info.samplerate
    constant = n > 1 and float(wave.max() - wave.min()) < CONSTANT_SPAN
    notes = [f"{info.channels} channels averaged to mono"] if info.channels > 1 else []
    if info.samplerate != sample_rate:
        notes.append(f"resampled from {info.samplerate} Hz to {sample_rate} Hz")
    peak = float(np.abs(wave).max())
    if peak > 1.0:  # float files may hold any finite value; the model knows full scale only
        wave = (wave / np.float32(peak)).astype(np.float32)
        notes.append(f"samples peaked at {peak:.3g}, above full scale (1.0): scaled down to full scale")
    wave = resample(wave, info.samplerate, sample_rate)
    if loudest_dbfs(wave, sample_rate) < SILENT_DBFS:
        notes.append(f"no speech detected: the audio is silent (below {SILENT_DBFS:g} dBFS); the label means nothing")
    elif constant:
        notes.append("the audio is a constant signal (no sound to judge); the label means nothing")
    if seconds < MIN_JUDGED_S:
        notes.append(
            f"only {seconds:.4f} s of audio ({n} sample{'s' * (n > 1)}), under {MIN_JUDGED_S:g} s: "
            "too short to judge; the label means little"
        )
    return Clip(wave, info.samplerate, info.channels, wave.shape[0] / sample_rate, notes)


def loudest_dbfs(wave: np.ndarray, sample_rate: int, frame_s: float = 0.025) -> float:
    """RMS level (dBFS) of the loudest `frame_s` frame."""
    n = max(1, int(frame_s * sample_rate))
    frames = wave[: len(wave) // n * n].reshape(-1, n) if len(wave) >= n else wave[None]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)).max()
    return float(20 * np.log10(max(rms, 1e-12)))
