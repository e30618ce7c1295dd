"""EDA report: the page and every figure are written for a small corpus and for two pooled corpora,
the numbers on the page match the manifest (per corpus too), and a failing run leaves the previous
report in place."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from PIL import Image
from typer.testing import CliRunner

from ser.audio import AudioError
from ser.cli import app
from ser.config import Params
from ser.data.eda import EdaError, eda_report, example_clips, pick_speaker, pitch_sample, usable_clips
from ser.labels import EMOTIONS, parse_name

FIGURES = {
    "counts_emotion",
    "counts_intensity",
    "counts_speaker",
    "waveforms",
    "mfcc",
    "logmel",
    "duration",
    "loudness",
    "pitch",
    "speech",
}
PARAMS = Params.model_validate({"features": {"workers": 2}})
# The second corpus: no RAVDESS fields, speaker ids of its own, one speaker of unknown gender, four classes.
OTHER_SPEAKERS = {
    "s1": ("female", ("neutral", "happy", "sad", "angry")),
    "s2": ("", ("happy", "angry")),
    "s3": ("male", ("neutral", "happy", "sad")),
}
OTHER_CLIPS = 2  # per speaker and emotion


def measured(raw: Path, rel: str, **labels) -> dict:
    """A manifest row as ingest writes it: `labels` and the measurements of the file raw/rel."""
    wave, sr = sf.read(raw / rel, dtype="float32", always_2d=True)
    mono = wave.mean(axis=1)
    blank = dict.fromkeys(("intensity", "statement", "repetition", "actor", "emotion_code", "language"), "")
    return (
        blank
        | labels
        | {
            "path": rel,
            "format": Path(rel).suffix.lstrip("."),
            "name_ok": True,
            "sample_rate": sr,
            "channels": wave.shape[1],
            "frames_declared": len(wave),
            "frames_decoded": len(wave),
            "duration_s": len(wave) / sr,
            "rms_dbfs": 20 * np.log10(np.sqrt(np.mean(mono**2)) + 1e-12),
            "peak": float(np.abs(wave).max()),
            "clip_ratio": 0.0,
            "sha256": "",
            "decode_error": None,
        }
    )


def synthetic_rows(raw: Path) -> list[dict]:
    """The synthetic RAVDESS-layout corpus under raw/synthetic, as the multi-corpus ingest lists it."""
    rows = []
    for path in sorted((raw / "synthetic").rglob("*.wav")):
        name = parse_name(path.name)
        fields = ("emotion", "gender", "emotion_code", "intensity", "statement", "repetition", "actor")
        labels = {field: getattr(name, field) for field in fields} | {
            "clip_id": f"synthetic:{path.stem}",
            "corpus": "synthetic",
            "speaker": f"synthetic:{name.actor:02d}",
            "scheme": "ravdess",
            "corpus_label": f"{name.emotion_code:02d}",
        }
        rows.append(measured(raw, path.relative_to(raw).as_posix(), **labels))
    return rows


def other_rows(raw: Path) -> list[dict]:
    """Copy synthetic clips into raw/other/<speaker>/<emotion>-<n>.wav (OTHER_SPEAKERS) and list them."""
    rows, source = [], sorted((raw / "synthetic").rglob("*.wav"))
    for speaker, (gender, emotions) in OTHER_SPEAKERS.items():
        (raw / "other" / speaker).mkdir(parents=True)
        for emotion in emotions:
            picked = [p for p in source if parse_name(p.name).emotion == emotion][:OTHER_CLIPS]
            for i, path in enumerate(picked, 1):
                rel = f"other/{speaker}/{emotion}-{i}.wav"
                shutil.copy(path, raw / rel)
                labels = dict(
                    clip_id=f"other:{speaker}/{emotion}-{i}",
                    corpus="other",
                    speaker=f"other:{speaker}",
                    scheme="table",
                    emotion=emotion,
                    corpus_label=emotion.upper(),
                    gender=gender,
                    language="de",
                )
                rows.append(measured(raw, rel, **labels))
    return rows


@pytest.fixture(scope="module")
def raw(tiny_corpus, tmp_path_factory):
    """data/raw of two corpora: the synthetic one (linked) and `other`."""
    root = tmp_path_factory.mktemp("raw")
    (root / "synthetic").symlink_to(tiny_corpus, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def manifest_csv(raw):
    path = raw.parent / "manifest.csv"
    pd.DataFrame(synthetic_rows(raw)).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def two_csv(raw, manifest_csv):
    path = raw.parent / "two.csv"
    pd.concat([pd.read_csv(manifest_csv), pd.DataFrame(other_rows(raw))]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(manifest_csv, raw):
    out = manifest_csv.parent / "eda"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ser.data.eda.PITCH_CLIPS", 3)  # 48 pitch clips instead of up to 192: seconds saved
        return eda_report(manifest_csv, raw, out, PARAMS), out


def check_figures(figures: dict, out: Path) -> str:
    """Every figure is a real PNG referenced by the page, and the folder holds nothing else; returns the page."""
    page = (out / "index.html").read_text()
    assert set(figures) == FIGURES
    assert set(re.findall(r'<img src="([^"]+)"', page)) == {f"{name}.png" for name in FIGURES}
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in FIGURES] + ["index.html"])
    for name, path in figures.items():
        assert path == out / f"{name}.png" and path.stat().st_size > 5_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 400 and image.height >= 300, name
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.std() > 5, f"{name} looks blank"
    assert not list(out.parent.glob(f".{out.name}.*")), "staging folder left behind"
    return page


def caption(page: str, name: str) -> str:
    found = re.search(rf'<figure id="{name}">.*?<figcaption>(.*?)</figcaption>', page)
    assert found, name
    return found.group(1)


def test_page_references_every_figure_and_each_is_a_real_image(report):
    result, out = report
    assert result["index"] == out / "index.html" and result["index"].is_file()
    check_figures(result["figures"], out)


def test_per_emotion_figures_cover_all_emotions(report):
    result, _ = report
    page = result["index"].read_text()
    for name in ("waveforms", "mfcc", "logmel"):
        assert all(emotion in caption(page, name) for emotion in EMOTIONS), name
    assert result["speaker"] == "synthetic:01"  # first speaker with all eight emotions
    assert "stacked by intensity" in caption(page, "counts_emotion")


def test_page_numbers_match_the_manifest(report, manifest_csv):
    result, _ = report
    manifest = pd.read_csv(manifest_csv)
    page = result["index"].read_text()
    assert f"{len(manifest)} ({len(manifest)} usable)" in page
    assert f"<th>Speakers</th><td>{manifest['speaker'].nunique()} (2 female, 2 male)" in page
    assert "<th>Corpora (1)</th><td>synthetic: 240 clips, 4 speakers, language unknown</td>" in page
    assert f"{manifest['duration_s'].sum() / 3600:.2f} hours" in page
    assert "16000 Hz (240 clips)" in page
    for emotion, n in manifest["emotion"].value_counts().items():
        assert f"<td>{emotion}</td><td>{n}</td><td>" in page
    summary = result["summary"]
    assert summary["clips"] == len(manifest) == 240 and summary["emotion_names"] == list(EMOTIONS)
    assert 0 < summary["pitch_clips"] <= 3 * 8 * 2
    assert "up to 3 random clips per emotion and gender" in page and "unknown gender" not in page
    speech = summary["speech"]
    assert speech["clips"] == speech["clips_with_speech"] == 240 and speech["window_s"] == [0.5, 4.0]
    assert (
        f"<th>Speech in the model window</th><td>window 0.50-4.00 s; speech runs "
        f"{speech['median_speech_start_s']:.2f}-{speech['median_speech_end_s']:.2f} s in the median clip; "
        f"the window keeps {100 * speech['mean_kept']:.1f} % of the speech frames"
    ) in page


def test_speaker_choice_and_example_clips(manifest_csv):
    clips = usable_clips(pd.read_csv(manifest_csv))
    assert pick_speaker(clips, "synthetic:03") == "synthetic:03"
    with pytest.raises(
        EdaError, match="'synthetic:09' has no usable clip; speakers present: synthetic:01, synthetic:02"
    ):
        pick_speaker(clips, "synthetic:09")
    assert pick_speaker(clips[~((clips["speaker"] == "synthetic:01") & (clips["emotion"] == "sad"))]) == "synthetic:02"
    examples = example_clips(clips, "synthetic:02")
    assert list(examples.index) == list(EMOTIONS) and (examples["speaker"] == "synthetic:02").all()
    assert (examples.drop(index="neutral")["intensity"] == "strong").all()
    assert (examples["statement"] == 1).all() and (examples["repetition"] == 1).all()


def test_two_corpora_report_with_a_chosen_speaker(two_csv, raw, monkeypatch):
    out, params = two_csv.parent / "eda-two", two_csv.parent / "params.yaml"
    params.write_text(yaml.safe_dump({"features": {"workers": 2}}))
    monkeypatch.setattr("ser.data.eda.PITCH_CLIPS", 2)
    args = ["report", "--params", str(params), "--manifest", str(two_csv), "--audio-dir", str(raw), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--speaker", "other:s1"])
    assert result.exit_code == 0, result.output
    assert "example speaker other:s1" in result.output
    page = check_figures({n: out / f"{n}.png" for n in FIGURES}, out)

    manifest = pd.read_csv(two_csv)
    assert f"{len(manifest)} ({len(manifest)} usable)" in page
    for corpus, language in (("synthetic", "unknown"), ("other", "de")):
        own = manifest[manifest["corpus"] == corpus]
        line = f"{corpus}: {len(own)} clips, {own['speaker'].nunique()} speakers, language {language}"
        assert line in page
    assert len(manifest[manifest["corpus"] == "other"]) == OTHER_CLIPS * 9
    assert "<th>Speakers</th><td>7 (3 female, 3 male, 1 unknown)</td>" in page
    assert "8: neutral, calm, happy, sad, angry, fearful, disgust, surprised<br>other lacks calm, fearful" in page
    counts = pd.crosstab(manifest["emotion"], manifest["corpus"])
    assert "<th>clips</th><th>synthetic</th><th>other</th>" in page
    for emotion in EMOTIONS:  # total, then per corpus (0 where the corpus lacks the class)
        row = counts.loc[emotion]
        assert f"<td>{emotion}</td><td>{row.sum()}</td><td>{row['synthetic']}</td><td>{row['other']}</td>" in page

    assert "for speaker other:s1" in caption(page, "waveforms")
    assert "(neutral, happy, sad, angry)" in caption(page, "waveforms")
    assert "stacked by corpus" in caption(page, "counts_emotion")
    assert "only the 240 clips of synthetic: other corpora do not record it" in caption(page, "counts_intensity")
    unknown = OTHER_CLIPS * len(OTHER_SPEAKERS["s2"][1])
    assert f"the {unknown} clips of speakers of unknown gender are left out" in caption(page, "pitch")

    missing = CliRunner().invoke(app, [*args, "--speaker", "other:s9"])
    assert missing.exit_code == 2
    assert "'other:s9' has no usable clip; speakers present: other:s1, other:s2, other:s3, synthetic:01" in (
        missing.output
    )


def test_other_corpus_speakers_examples_and_pitch(two_csv, raw, monkeypatch):
    clips = usable_clips(pd.read_csv(two_csv))
    assert pick_speaker(clips) == "synthetic:01"
    assert pick_speaker(clips[clips["corpus"] == "other"]) == "other:s1"  # most emotions
    examples = example_clips(clips, "other:s2")
    assert list(examples.index) == ["happy", "angry"]
    assert list(examples["clip_id"]) == ["other:s2/happy-1", "other:s2/angry-1"]  # first by clip_id
    monkeypatch.setattr("ser.data.eda.PITCH_CLIPS", 1)
    pitch = pitch_sample(clips[clips["corpus"] == "other"], raw, 16000, 1)
    assert set(pitch["gender"]) == {"female", "male"} and len(pitch) == 4 + 3  # s2, of unknown gender, left out
    none = pitch_sample(clips[clips["speaker"] == "other:s2"], raw, 16000, 1)
    assert none.empty and list(none.columns) == ["clip_id", "emotion", "gender", "f0"]


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
    with pytest.raises(EdaError, match="lacks column.s. corpus, speaker"):
        usable_clips(bad.drop(columns=["corpus", "speaker"]))
