"""Speech coverage of the model window: how much of each clip's speech the fixed window keeps.

The model sees `features.duration` seconds of every clip in training and evaluation, from where
`ser.audio.window_start` puts the window (`features.offset`, or that long before the speech onset
with `features.align: speech`): speech before the window or after its end is never seen. Speech
is every 25 ms frame (10 ms hop) whose RMS lies within `SPEECH_TOP_DB` of the clip's loudest frame
(`ser.audio.speech_frames`), an energy threshold suited to clean studio recordings. `ser report`
shows the summary and a figure on the EDA page:

    ser report --params params.yaml --manifest data/manifest.csv --audio-dir data/raw --out reports/eda
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ser.audio import SPEECH_FRAME_S as FRAME_S
from ser.audio import SPEECH_HOP_S as HOP_S
from ser.audio import SPEECH_TOP_DB as SPEECH_TOP_DB
from ser.audio import load_audio, speech_frames, window_start
from ser.config import FeatureParams

LOSS_SHARE = 0.05  # a clip "loses speech" when the window misses more than this share of its speech frames


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
        wave = load_audio(Path(audio_dir) / path, sr)
        return clip_coverage(wave, sr, window_start(wave, sr, features.offset, features.align), features.duration)

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
