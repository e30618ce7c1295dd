"""The `ingest` stage: put the corpus under data/ and write the clip manifest.

Sources (params `data.source`): `synthetic` (generated, offline), `ravdess`
(downloaded from Zenodo) or a folder of RAVDESS-layout audio. Files are copied
as they are; every clip is decoded once here and its measurements (duration,
rate, channels, RMS, peak, clipping, checksum, decode problems) are stored in
the manifest, one row per clip, so later checks never decode again.

    ser ingest --params params.yaml --out data/raw --manifest data/manifest.csv
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ser.config import DataParams
from ser.io import atomic_path
from ser.labels import AUDIO_SUFFIXES, LabelError, parse_name

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "clip_id",
    "path",
    "format",
    "name_ok",
    "modality",
    "vocal_channel",
    "emotion_code",
    "emotion",
    "intensity",
    "statement",
    "repetition",
    "actor",
    "folder_actor",
    "gender",
    "sample_rate",
    "channels",
    "frames_declared",
    "frames_decoded",
    "duration_s",
    "rms_dbfs",
    "peak",
    "clip_ratio",
    "sha256",
    "decode_error",
]
# The manifest's integer columns (nullable Int64: a file that does not decode has none of them).
INTEGER_COLUMNS = (
    "modality",
    "vocal_channel",
    "emotion_code",
    "statement",
    "repetition",
    "actor",
    "folder_actor",
    "sample_rate",
    "channels",
    "frames_declared",
    "frames_decoded",
)
ACTOR_DIR = re.compile(r"^Actor_(\d+)$")


class IngestError(ValueError):
    """The corpus source is missing, empty, or not in RAVDESS layout."""


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


def measure_clip(root: Path, rel: Path) -> dict:
    """One manifest row: labels from the name and measurements from one full decode."""
    path = root / rel
    row: dict = dict.fromkeys(MANIFEST_COLUMNS)
    folder = ACTOR_DIR.match(rel.parent.name)
    row.update(
        clip_id=rel.stem,
        path=rel.as_posix(),
        format=rel.suffix.lstrip(".").lower(),
        folder_actor=int(folder.group(1)) if folder else None,
        name_ok=True,
    )
    try:
        name = parse_name(rel.name)
        row.update(
            modality=name.modality,
            vocal_channel=name.vocal_channel,
            emotion_code=name.emotion_code,
            emotion=name.emotion,
            intensity=name.intensity,
            statement=name.statement,
            repetition=name.repetition,
            actor=name.actor,
            gender=name.gender,
        )
    except LabelError:
        row["name_ok"] = False
    row["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        info = sf.info(str(path))
        row.update(sample_rate=info.samplerate, channels=info.channels)
        declared = wav_declared_frames(path) if row["format"] == "wav" else None
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


def find_audio(root: Path) -> tuple[list[Path], list[Path]]:
    """Audio files (relative, sorted) under root, and the other files that were skipped."""
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")]
    return audio, [p for p in files if p not in set(audio)]


def build_manifest(root: Path, workers: int = 2) -> pd.DataFrame:
    """Measure every audio file under `root` into a manifest DataFrame."""
    audio, skipped = find_audio(root)
    if skipped:
        log.warning("skipped %d non-audio file(s), e.g. %s", len(skipped), skipped[0])
    if not audio:
        raise IngestError(
            f"{root}: no audio files (.wav/.flac/.ogg) found; expected RAVDESS layout Actor_XX/MM-VV-EE-II-SS-RR-AA.wav"
        )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda rel: measure_clip(root, rel), audio))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for col in INTEGER_COLUMNS:
        manifest[col] = manifest[col].astype("Int64")
    manifest["name_ok"] = manifest["name_ok"].astype(bool)
    return manifest


def project_path(path: Path | str) -> Path:
    """`path` as the user meant it: a relative one is relative to the project, not the stage's folder.

    `dvc exp run --temp` (`make run`) runs the stages in a copy under .dvc/tmp/exps/ and names the
    project in $DVC_ROOT, so `data.source: ../shared/...` and the download cache resolve as in
    `dvc repro`.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(os.environ.get("DVC_ROOT", ".")) / path


def source_folder(data: DataParams, download_dir: Path) -> Path | None:
    """The folder to copy from, downloading RAVDESS first when asked; None for synthetic."""
    if data.source == "synthetic":
        return None
    if data.source == "ravdess":
        from ser.data.download import fetch_ravdess

        return fetch_ravdess(project_path(download_dir))
    folder = project_path(data.source)
    if not folder.is_dir():
        raise IngestError(
            f"data.source: folder {folder} does not exist; expected 'synthetic', 'ravdess' "
            "or a folder of RAVDESS-layout audio"
        )
    return folder


def ingest(data: DataParams, out_dir: Path, manifest_path: Path, download_dir: Path, workers: int = 2) -> pd.DataFrame:
    """Fill `out_dir` with the corpus and write the manifest CSV; both replace old ones atomically."""
    folder = source_folder(data, download_dir)
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        if folder is None:
            from ser.data.synth import generate_corpus

            generate_corpus(staging, n_actors=data.synthetic.n_actors, seed=data.synthetic.seed)
        else:
            audio, _ = find_audio(folder)
            if not audio:
                raise IngestError(
                    f"data.source: {folder}: no audio files (.wav/.flac/.ogg) found; expected "
                    "RAVDESS layout Actor_XX/MM-VV-EE-II-SS-RR-AA.wav"
                )
            for rel in audio:
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / rel, staging / rel)
        manifest = build_manifest(staging, workers)
        with atomic_path(manifest_path) as tmp:
            manifest.to_csv(tmp, index=False)
    bad = manifest[manifest["decode_error"].notna() | ~manifest["name_ok"]]
    if len(bad):
        log.warning("%d clip(s) with problems (validate decides): %s", len(bad), bad["path"].tolist()[:5])
    log.info("ingested %d clips from %s into %s", len(manifest), folder or "synthetic", out_dir)
    return manifest
