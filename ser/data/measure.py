"""A clip's measurements from one full decode: what the manifest records so no later check decodes again.

Duration, rate, channels, RMS, peak, clipping, checksum and decode problems; for WAV, also the frames its header
declares, since libsndfile silently shortens a truncated file.

    row = measure_clip(Path("data/raw/ravdess/Actor_01/03-01-01-01-01-01-01.wav"), "wav")
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import soundfile as sf


def wav_declared_frames(path: Path) -> int | None:
    """Frames a WAV header declares (libsndfile silently shortens truncated files)."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while chunk := f.read(8):
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                block_align = struct.unpack("<H", f.read(16)[12:14])[0]
                f.seek(size - 16 + (size & 1), 1)
            elif cid == b"data":
                return size // block_align if block_align else None
            else:
                f.seek(size + (size & 1), 1)
    return None


def measure_clip(path: Path, fmt: str) -> dict:
    """A clip's measurements from one full decode (and, for WAV, the frames its header declares)."""
    row: dict = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    try:
        info = sf.info(str(path))
        row.update(sample_rate=info.samplerate, channels=info.channels)
        declared = wav_declared_frames(path) if fmt == "wav" else None
        row["frames_declared"] = declared if declared is not None else info.frames
        samples, _ = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        row["decode_error"] = str(err).strip() or type(err).__name__
        return row
    mono = samples.mean(axis=1)
    finite = np.isfinite(mono).all()
    rms = float(np.sqrt(np.mean(mono**2))) if finite and mono.size else 0.0
    row.update(
        frames_decoded=samples.shape[0],
        duration_s=samples.shape[0] / info.samplerate,
        rms_dbfs=20 * np.log10(rms + 1e-12),
        peak=float(np.abs(samples).max()) if samples.size else 0.0,
        clip_ratio=float(np.mean(np.abs(samples) >= 0.999)) if samples.size else 0.0,
    )
    if row["frames_declared"] and samples.shape[0] < row["frames_declared"]:
        row["decode_error"] = f"truncated: {samples.shape[0]} of {row['frames_declared']} frames"
    elif not finite:
        row["decode_error"] = "NaN or infinite samples"
    return row
