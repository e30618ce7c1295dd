"""Ingest: every source lands under data/ with a manifest; bad corpora get clear errors
and never destroy what an earlier run produced."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.config import DataParams
from ser.data.featurize import FeaturizeError, select_clips
from ser.data.ingest import MANIFEST_COLUMNS, IngestError, build_manifest, ingest
from ser.labels import EMOTIONS


def test_synthetic_source_writes_audio_and_manifest(tmp_path):
    out, manifest = tmp_path / "raw", tmp_path / "manifest.csv"
    frame = ingest(DataParams(synthetic={"n_actors": 2, "seed": 1}), out, manifest, tmp_path / "dl")
    assert len(frame) == 120 and list(pd.read_csv(manifest).columns) == MANIFEST_COLUMNS
    assert (out / frame.loc[0, "path"]).is_file()
    assert frame["name_ok"].all() and frame["decode_error"].isna().all()
    assert set(frame["emotion"]) == set(EMOTIONS)
    assert (frame["sample_rate"] == 16000).all() and (frame["channels"] == 1).all()
    assert frame["duration_s"].between(2.5, 5).all()
    assert (frame["actor"] == frame["folder_actor"]).all()


def test_local_folder_source_copies_any_rate_and_format(tmp_path, tiny_corpus):
    src = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "Actor_01", src / "Actor_01")
    wav = next((src / "Actor_01").glob("*.wav"))
    samples, sr = sf.read(wav)
    sf.write(wav.with_suffix(".flac"), np.repeat(samples[::1], 3), sr * 3)  # a 48 kHz FLAC
    wav.unlink()
    (src / "README.md").write_text("not audio, skipped")
    frame = ingest(DataParams(source=str(src)), tmp_path / "raw", tmp_path / "m.csv", tmp_path / "dl")
    assert len(frame) == 60
    flac = frame[frame["format"] == "flac"].iloc[0]
    assert flac["sample_rate"] == 48000 and (tmp_path / "raw" / flac["path"]).is_file()


def test_problem_files_are_recorded_for_validation(tmp_path, tiny_corpus):
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "Actor_02", root / "Actor_02")
    files = sorted((root / "Actor_02").glob("*.wav"))
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])  # truncated
    files[1].write_bytes(b"this is text, not audio" * 50)  # non-audio bytes with an audio suffix
    files[2].rename(root / "Actor_02" / "hello.wav")  # badly named
    frame = build_manifest(root).set_index("clip_id")
    assert frame.loc[files[0].stem, "decode_error"].startswith("truncated")
    assert "Format not recognised" in frame.loc[files[1].stem, "decode_error"]
    assert not frame.loc["hello", "name_ok"] and pd.isna(frame.loc["hello", "emotion"])
    # Featurizing such a manifest stops with every offending file named.
    with pytest.raises(FeaturizeError) as err:
        select_clips(frame.reset_index(), list(EMOTIONS))
    for name in (files[0].name, files[1].name, "hello.wav"):
        assert name in str(err.value)


def test_empty_or_missing_folder_fails_and_keeps_earlier_output(tmp_path):
    out, manifest = tmp_path / "raw", tmp_path / "manifest.csv"
    ingest(DataParams(synthetic={"n_actors": 1}), out, manifest, tmp_path / "dl")
    before = manifest.read_bytes()
    (tmp_path / "empty" / "Actor_01").mkdir(parents=True)
    with pytest.raises(IngestError, match=r"empty.*no audio files"):
        ingest(DataParams(source=str(tmp_path / "empty")), out, manifest, tmp_path / "dl")
    with pytest.raises(IngestError, match="data.source: folder .*nowhere does not exist"):
        ingest(DataParams(source=str(tmp_path / "nowhere")), out, manifest, tmp_path / "dl")
    assert manifest.read_bytes() == before and len(list(out.rglob("*.wav"))) == 60
    assert not list(tmp_path.glob(".*tmp*"))  # no staging leftovers


@pytest.mark.realdata
def test_real_ravdess_manifest(ravdess_dir):
    frame = build_manifest(ravdess_dir)
    assert len(frame) == 1440 and frame["actor"].nunique() == 24
    assert frame["decode_error"].isna().all() and frame["name_ok"].all()
    assert frame.groupby("emotion").size().to_dict()["neutral"] == 96
