"""Safe decoding of uploaded audio for the service: limits first, then samples.

Every check that can run without decoding does so first: the file size against
the upload cap, then the header (`soundfile.info`) for format, sample rate,
channels and duration. Decoding reads at most the duration cap (plus one frame)
block by block, downmixing as it goes, so a tiny compressed file that claims or
holds hours of audio is refused without decoding it all and memory stays
bounded. Errors are `UploadError`s carrying an HTTP status (400 or 413) and a
message that says what was wrong and what is expected.

    limits = Limits.from_serve({"max_upload_mb": 20, "max_duration_s": 60})
    clip = decode_upload(Path("clip.flac"), 16000, limits)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.audio import AudioError, resample

FORMATS = "wav, flac, ogg" + (", mp3" if "MP3" in sf.available_formats() else "")
MIN_RATE, MAX_RATE = 4000, 192000
MAX_CHANNELS = 8
BLOCK_FRAMES = 1 << 16
# libsndfile's header log says "data : 112000 (should be 100795)" when a WAV-like file was cut short.
_DATA_LENGTH = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMED = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # sizes written by encoders that stream and never patch the header


class UploadError(AudioError):
    """An upload the service refuses; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Upload limits (the `serve` section of params.yaml, stored in the model's metadata)."""

    max_upload_bytes: int = 20 * 2**20
    max_duration_s: float = 60.0

    @classmethod
    def from_serve(cls, serve: dict) -> Limits:
        """Limits from a `serve` mapping (max_upload_mb, max_duration_s); missing keys keep defaults."""
        return cls(
            max_upload_bytes=int(float(serve.get("max_upload_mb", 20)) * 2**20),
            max_duration_s=float(serve.get("max_duration_s", 60.0)),
        )


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
        raise UploadError(f"empty upload: expected an audio file ({FORMATS})")
    if size > limits.max_upload_bytes:
        cap = limits.max_upload_bytes / 2**20
        raise UploadError(f"upload of {size / 2**20:.2f} MiB is over the {cap:g} MiB upload cap", status=413)


def probe(path: Path, limits: Limits) -> sf._SoundFileInfo:
    """Header checks: readable format, sample rate, channels and duration, before decoding."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        reason = str(err).replace(f"Error opening {str(path)!r}: ", "")  # keep server paths out of replies
        raise UploadError(f"not a readable audio file ({reason}); expected {FORMATS}") from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise UploadError(f"sample rate {info.samplerate} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise UploadError(f"{info.channels} channels; expected 1 to {MAX_CHANNELS} (they are averaged to mono)")
    if info.frames / info.samplerate > limits.max_duration_s:
        raise UploadError(
            f"audio lasts {info.frames / info.samplerate:.1f} s; the limit is "
            f"{limits.max_duration_s:g} s (send a shorter clip)",
            status=413,
        )
    cut = _DATA_LENGTH.search(info.extra_info or "")
    if cut and int(cut.group(1)) > int(cut.group(2)) and int(cut.group(1)) not in _STREAMED:
        raise UploadError(
            f"the file is truncated: its header announces {cut.group(1)} bytes of audio, it holds "
            f"{cut.group(2)}; expected a complete {FORMATS} file"
        )
    return info


def read_mono(path: Path, max_frames: int) -> np.ndarray:
    """Decode at most `max_frames + 1` frames block by block, averaging channels as it goes."""
    blocks, total = [], 0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=BLOCK_FRAMES, frames=max_frames + 1, dtype="float32", always_2d=True):
                blocks.append(block.mean(axis=1) if block.shape[1] > 1 else block[:, 0].copy())
                total += block.shape[0]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise UploadError(
            f"cannot decode the audio after {total} frames ({err}); the file is truncated or "
            f"corrupt, expected a complete {FORMATS} file"
        ) from None
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def decode_upload(path: Path, sample_rate: int, limits: Limits) -> Clip:
    """Check and decode an uploaded file to mono float32 at `sample_rate`.

    Raises:
        UploadError: with status 413 for size/duration caps, 400 for everything else.
    """
    path = Path(path)
    check_size(path.stat().st_size, limits)
    info = probe(path, limits)
    max_frames = int(limits.max_duration_s * info.samplerate)
    wave = read_mono(path, max_frames)
    if wave.shape[0] > max_frames:  # the header understated the length
        raise UploadError(
            f"audio lasts more than {limits.max_duration_s:g} s, the limit (send a shorter clip)", status=413
        )
    if wave.shape[0] < info.frames and info.format != "MP3":  # MP3 frame counts are estimates
        raise UploadError(
            f"the file is truncated: decoded {wave.shape[0]} of the {info.frames} frames its header "
            f"announces; expected a complete {FORMATS} file"
        )
    if wave.shape[0] == 0:
        raise UploadError("the audio holds no samples (zero length); expected at least one sample")
    if not np.isfinite(wave).all():
        raise UploadError("the audio holds NaN or infinite samples; expected finite values")
    notes = []
    if info.channels > 1:
        notes.append(f"{info.channels} channels averaged to mono")
    if info.samplerate != sample_rate:
        notes.append(f"resampled from {info.samplerate} Hz to {sample_rate} Hz")
    return Clip(
        resample(wave, info.samplerate, sample_rate),
        info.samplerate,
        info.channels,
        wave.shape[0] / info.samplerate,
        notes,
    )
