"""Speech coverage of the model window: speech found where a constructed clip has it, the shares
the window keeps and loses at each end, silent clips left out, and a synthetic corpus whose
speech onsets (0.3-0.9 s by construction) straddle the default 0.5 s offset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ser.config import Params
from ser.data.coverage import clip_coverage, summarize_coverage, window_coverage
from ser.data.ingest import build_manifest

SR = 16000


def clip(speech: tuple[float, float], total: float = 4.5, seed: int = 0) -> np.ndarray:
    """A quiet noise floor (-80 dBFS) with a loud voiced stretch (200 Hz harmonics) from speech[0] to speech[1] s."""
    rng = np.random.default_rng(seed)
    wave = rng.normal(0, 1e-4, int(total * SR)).astype(np.float32)
    a, b = int(speech[0] * SR), int(speech[1] * SR)
    t = np.arange(b - a) / SR
    wave[a:b] += 0.3 * sum(np.sin(2 * np.pi * 200 * k * t) / k for k in range(1, 6)).astype(np.float32)
    return wave


def test_speech_inside_the_window_is_all_kept():
    cov = clip_coverage(clip((1.0, 2.5)), SR, offset=0.5, duration=3.5)
    assert cov["speech_start_s"] == pytest.approx(1.0, abs=0.03)
    assert cov["speech_end_s"] == pytest.approx(2.5, abs=0.03)
    assert cov["speech_s"] == pytest.approx(1.5, abs=0.05)
    assert cov["kept"] == 1.0 and cov["lost_start"] == cov["lost_end"] == 0.0


def test_speech_outside_the_window_is_counted_at_each_end():
    early = clip_coverage(clip((0.2, 1.2)), SR, offset=0.5, duration=3.5)
    assert early["lost_start"] == pytest.approx(0.3, abs=0.03) and early["lost_end"] == 0.0
    assert early["kept"] == pytest.approx(0.7, abs=0.03)
    late = clip_coverage(clip((3.0, 4.4)), SR, offset=0.5, duration=3.5)
    assert late["lost_end"] == pytest.approx(0.4 / 1.4, abs=0.03) and late["lost_start"] == 0.0
    assert late["kept"] + late["lost_end"] == pytest.approx(1.0)
    whole = clip_coverage(clip((0.2, 1.2)), SR, offset=0.0, duration=4.5)
    assert whole["kept"] == 1.0


def test_silent_and_too_short_clips_have_no_speech():
    for wave in (np.zeros(SR * 3, np.float32), np.ones(100, np.float32)):
        assert all(np.isnan(v) for v in clip_coverage(wave, SR, 0.5, 3.5).values())


def test_summary_leaves_clips_without_speech_out_of_the_shares():
    rows = [clip_coverage(w, SR, 0.5, 3.5) for w in (clip((1.0, 2.0)), clip((0.1, 1.1)), np.zeros(SR * 3, np.float32))]
    table = pd.DataFrame(rows).assign(clip_id=["a", "b", "c"])
    summary = summarize_coverage(table, 0.5, 3.5)
    assert summary["clips"] == 3 and summary["clips_with_speech"] == 2 and summary["window_s"] == [0.5, 4.0]
    assert summary["share_cut_at_start"] == 0.5 and summary["share_cut_at_end"] == 0.0
    assert summary["share_losing_speech"] == 0.5  # b loses 40 % of its speech before 0.5 s
    assert summary["mean_kept"] == pytest.approx((1.0 + 0.6) / 2, abs=0.02)
    empty = summarize_coverage(table.iloc[2:], 0.5, 3.5)
    assert empty == {"window_s": [0.5, 4.0], "clips": 1, "clips_with_speech": 0}


def test_synthetic_corpus_onsets_straddle_the_default_offset(tiny_corpus):
    features = Params.model_validate({"features": {"workers": 2}}).features
    manifest = build_manifest(tiny_corpus)
    table = window_coverage(manifest, tiny_corpus, features)
    assert list(table["clip_id"]) == list(manifest["clip_id"]) and table["kept"].notna().all()
    summary = summarize_coverage(table, features.offset, features.duration)
    assert 0.3 <= summary["median_speech_start_s"] <= 0.9  # synth.py draws each onset in 0.3-0.9 s
    assert 0.0 < summary["share_cut_at_start"] < 1.0 and 0.5 < summary["mean_kept"] < 1.0
