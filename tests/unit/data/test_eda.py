"""EDA report: the page and every figure are written for a small corpus, the numbers on the
page match the manifest, and a failing run leaves the previous report in place."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ser.audio import AudioError
from ser.config import Params
from ser.data.eda import EdaError, eda_report, example_clips, pick_actor, usable_clips
from ser.data.ingest import build_manifest
from ser.labels import EMOTIONS

FIGURES = {
    "counts_emotion",
    "counts_intensity",
    "counts_actor",
    "waveforms",
    "mfcc",
    "logmel",
    "duration",
    "loudness",
    "pitch",
    "speech",
}
PARAMS = Params.model_validate({"features": {"workers": 2}})


@pytest.fixture(scope="module")
def manifest_csv(tiny_corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("eda") / "manifest.csv"
    build_manifest(tiny_corpus).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(manifest_csv, tiny_corpus):
    out = manifest_csv.parent / "eda"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ser.data.eda.PITCH_CLIPS", 3)  # 48 pitch clips instead of up to 192: seconds saved
        return eda_report(manifest_csv, tiny_corpus, out, PARAMS), out


def test_page_references_every_figure_and_each_is_a_real_image(report):
    result, out = report
    assert result["index"] == out / "index.html" and result["index"].is_file()
    assert set(result["figures"]) == FIGURES
    page = result["index"].read_text()
    assert set(re.findall(r'<img src="([^"]+)"', page)) == {f"{name}.png" for name in FIGURES}
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in FIGURES] + ["index.html"])
    for name, path in result["figures"].items():
        assert path == out / f"{name}.png" and path.stat().st_size > 5_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300, name
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 5, f"{name} looks blank"
    assert not list(out.parent.glob(".eda.*")), "staging folder left behind"


def test_per_emotion_figures_cover_all_emotions(report):
    result, _ = report
    page = result["index"].read_text()
    for name in ("waveforms", "mfcc", "logmel"):
        caption = re.search(rf'<figure id="{name}">.*?<figcaption>(.*?)</figcaption>', page).group(1)
        assert all(emotion in caption for emotion in EMOTIONS), name
    assert result["actor"] == 1  # lowest actor with all eight emotions


def test_page_numbers_match_the_manifest(report, manifest_csv):
    result, _ = report
    manifest = pd.read_csv(manifest_csv)
    page = result["index"].read_text()
    assert f"{len(manifest)} ({len(manifest)} usable)" in page
    assert f"<th>Actors</th><td>{manifest['actor'].nunique()} (" in page
    assert f"{manifest['duration_s'].sum() / 3600:.2f} hours" in page
    assert "16000 Hz (240 clips)" in page
    for emotion, n in manifest["emotion"].value_counts().items():
        assert f"<td>{emotion}</td><td>{n}</td>" in page
    summary = result["summary"]
    assert summary["clips"] == len(manifest) == 240 and summary["emotion_names"] == list(EMOTIONS)
    assert 0 < summary["pitch_clips"] <= 3 * 8 * 2
    assert "up to 3 random clips per emotion and gender" in page
    speech = summary["speech"]
    assert speech["clips"] == speech["clips_with_speech"] == 240 and speech["window_s"] == [0.5, 4.0]
    assert (
        f"<th>Speech in the model window</th><td>window 0.50-4.00 s; speech runs "
        f"{speech['median_speech_start_s']:.2f}-{speech['median_speech_end_s']:.2f} s in the median clip; "
        f"the window keeps {100 * speech['mean_kept']:.1f} % of the speech frames"
    ) in page


def test_actor_choice_and_example_clips(manifest_csv):
    clips = usable_clips(pd.read_csv(manifest_csv))
    assert pick_actor(clips, 3) == 3
    with pytest.raises(EdaError, match="actor 9"):
        pick_actor(clips, 9)
    assert pick_actor(clips[~((clips["actor"] == 1) & (clips["emotion"] == "sad"))]) == 2
    examples = example_clips(clips, 2)
    assert list(examples.index) == list(EMOTIONS) and (examples["actor"] == 2).all()
    assert (examples.drop(index="neutral")["intensity"] == "strong").all()


def test_failed_run_keeps_the_previous_report(report, manifest_csv, tmp_path):
    result, out = report
    before = result["index"].read_text()
    with pytest.raises(AudioError):  # audio folder without the clips
        eda_report(manifest_csv, tmp_path / "missing", out, PARAMS)
    assert result["index"].read_text() == before and len(list(out.glob("*.png"))) == len(FIGURES)
    bad = pd.read_csv(manifest_csv).assign(decode_error="truncated")
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(EdaError, match="no labelled, decodable clip"):
        eda_report(tmp_path / "bad.csv", tmp_path, tmp_path / "eda", PARAMS)
