"""Speech coverage of the model window: how much of each clip's speech the fixed window keeps.

The model sees `features.duration` seconds from `features.offset` (params.yaml) of every clip in
training and evaluation (and of clips up to `offset + duration` long when serving): speech before
the offset or after the window's end is never seen. Here speech is every 25 ms frame (10 ms hop)
whose RMS lies within `SPEECH_TOP_DB` of the clip's loudest frame, an energy threshold suited to
clean studio recordings such as RAVDESS. `ser report` shows the summary and a figure on the EDA page:

    ser report --params params.yaml --manifest data/manifest.csv --audio-dir data/raw --out reports/eda
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from ser.audio import load_audio
from ser.config import FeatureParams

SPEECH_TOP_DB = 35.0  # frames this far below the clip's loudest still count as speech
FRAME_S, HOP_S = 0.025, 0.010
LOSS_SHARE = 0.05  # a clip "loses speech" when the window misses more than this share of its speech frames


def speech_frames(wave: np.ndarray, sample_rate: int, top_db: float = SPEECH_TOP_DB) -> tuple[np.ndarray, np.ndarray]:
    """Centre times (s) of the 25 ms frames of `wave` and whether each is speech (within `top_db` of the loudest)."""
    frame, hop = int(round(FRAME_S * sample_rate)), int(round(HOP_S * sample_rate))
    if wave.shape[0] < frame:
        return np.zeros(0), np.zeros(0, dtype=bool)
    rms = librosa.feature.rms(y=wave, frame_length=frame, hop_length=hop, center=False)[0]
    centres = (np.arange(rms.shape[0]) * hop + frame / 2) / sample_rate
    loudest = rms.max()
    if loudest <= 0:  # digital silence: no speech at all
        return centres, np.zeros(rms.shape[0], dtype=bool)
    return centres, rms >= loudest * 10 ** (-top_db / 20)


def clip_coverage(wave: np.ndarray, sample_rate: int, offset: float, duration: float) -> dict[str, float]:
    """Where a clip's speech lies against the window `offset`..`offset + duration` (seconds).

    Returns:
        speech_start_s/speech_end_s: edges of the first and last speech frames; speech_s: seconds of speech;
        lost_start/lost_end: shares of the speech frames before/after the window; kept: the share inside.
        All NaN for a clip without speech frames (silent, or shorter than one frame).
    """
    centres, speech = speech_frames(wave, sample_rate)
    if not speech.any():
        return dict.fromkeys(("speech_start_s", "speech_end_s", "speech_s", "lost_start", "lost_end", "kept"), np.nan)
    times = centres[speech]
    lost_start, lost_end = float((times < offset).mean()), float((times >= offset + duration).mean())
    return {
        "speech_start_s": float(times[0] - FRAME_S / 2),
        "speech_end_s": float(times[-1] + FRAME_S / 2),
        "speech_s": float(speech.sum() * HOP_S),
        "lost_start": lost_start,
        "lost_end": lost_end,
        "kept": 1.0 - lost_start - lost_end,
    }


def window_coverage(clips: pd.DataFrame, audio_dir: Path, features: FeatureParams) -> pd.DataFrame:
    """`clip_coverage` of every clip (decoded at `features.sample_rate`), beside its clip_id and emotion.

    Args:
        clips: manifest rows with `clip_id`, `emotion` and `path` (relative to `audio_dir`).
        audio_dir: folder the paths are relative to.
        features: sets the decoding rate, `offset` and `duration` (the model window) and `workers`.
    """
    sr = features.sample_rate

    def one(path: str) -> dict[str, float]:
        return clip_coverage(load_audio(Path(audio_dir) / path, sr), sr, features.offset, features.duration)

    with ThreadPoolExecutor(max_workers=max(1, features.workers)) as pool:
        rows = list(pool.map(one, clips["path"]))
    return pd.concat([clips[["clip_id", "emotion"]].reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def summarize_coverage(table: pd.DataFrame, offset: float, duration: float) -> dict:
    """Corpus-level numbers of a `window_coverage` table; clips without speech count only in `clips`."""
    speech = table.dropna(subset=["kept"])
    out = {"window_s": [offset, offset + duration], "clips": int(len(table)), "clips_with_speech": int(len(speech))}
    if speech.empty:
        return out
    return out | {
        "median_speech_start_s": float(speech["speech_start_s"].median()),
        "median_speech_end_s": float(speech["speech_end_s"].median()),
        "mean_kept": float(speech["kept"].mean()),
        "share_losing_speech": float((speech["kept"] < 1 - LOSS_SHARE).mean()),
        "share_cut_at_start": float((speech["lost_start"] > 0).mean()),
        "share_cut_at_end": float((speech["lost_end"] > 0).mean()),
    }
