"""The validate stages end to end: quarantine mode lets the rest of the pipeline run on
the good clips (nothing deleted), the feature contract passes on featurize output and
catches corrupted arrays, statistics and split leakage, and the real corpus passes
except for the one truly duplicated recording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.config import parse_params
from ser.data.contract import ContractError
from ser.data.featurize import featurize
from ser.data.ingest import build_manifest
from ser.data.validate import validate_features, validate_raw
from ser.io import read_json, write_json
from tests.conftest import tiny_params


def _rewrite(path: Path, change) -> None:
    samples, sr = sf.read(path, dtype="float32")
    sf.write(path, *change(samples, sr))


def _clip(s, sr):
    return np.clip(20 * s, -1, 1), sr


BROKEN = {  # clip (path under the corpus) -> (how it is broken, the check that must quarantine it)
    "Actor_01/03-01-02-01-01-01-01.wav": (lambda p: p.write_bytes(p.read_bytes()[:20000]), "complete"),
    "Actor_01/03-01-03-01-01-01-01.wav": (lambda p: _rewrite(p, lambda s, sr: (s[::2], 8000)), "sample_rate"),
    "Actor_02/03-01-04-01-01-01-02.wav": (lambda p: _rewrite(p, lambda s, sr: (np.stack([s, s], 1), sr)), "channels"),
    "Actor_03/03-01-05-01-01-01-03.wav": (lambda p: _rewrite(p, lambda s, sr: (s * 0, sr)), "not_silent"),
    "Actor_04/03-01-06-01-01-01-04.wav": (lambda p: _rewrite(p, _clip), "not_clipped"),
    "Actor_02/03-01-09-01-01-02-02.wav": (None, "emotion_code"),  # renamed from emotion 07 below
    "Actor_03/03-01-08-02-02-02-03.wav": (None, "unique_content"),  # a copy of another clip
}


@pytest.fixture(scope="module")
def quarantined(tmp_path_factory, tiny_corpus):
    """A corpus with seven broken clips, validated in quarantine mode, then featurized."""
    work = tmp_path_factory.mktemp("quarantine")
    root = work / "corpus"
    shutil.copytree(tiny_corpus, root)
    for rel, (brk, _) in BROKEN.items():
        if brk:
            brk(root / rel)
    (root / "Actor_02/03-01-07-01-01-02-02.wav").rename(root / "Actor_02/03-01-09-01-01-02-02.wav")
    shutil.copyfile(root / "Actor_03/03-01-08-02-02-01-03.wav", root / "Actor_03/03-01-08-02-02-02-03.wav")
    build_manifest(root).to_csv(work / "manifest.csv", index=False)
    params = parse_params(tiny_params(validate={"mode": "quarantine"}))
    result = validate_raw(
        params,
        work / "manifest.csv",
        work / "accepted.csv",
        work / "quarantine.csv",
        work / "raw.json",
        work / "raw.html",
    )
    summary = featurize(params, work / "accepted.csv", root, work / "features")
    return {"work": work, "root": root, "params": params, "result": result, "summary": summary}


def test_quarantine_lists_bad_clips_and_the_pipeline_continues(quarantined):
    work, result = quarantined["work"], quarantined["result"]
    assert result["success"] and result["quarantined"] == len(BROKEN) and result["accepted"] == 240 - len(BROKEN)
    listed = pd.read_csv(work / "quarantine.csv").set_index("path")["failed"].str.split()
    assert set(listed.index) == set(BROKEN)
    for rel, (_, check) in BROKEN.items():
        assert check in listed[rel], rel
        assert (quarantined["root"] / rel).is_file()  # listed, never deleted
    accepted = pd.read_csv(work / "accepted.csv")
    assert len(accepted) == 240 - len(BROKEN) and not set(BROKEN) & set(accepted["path"])
    report = (work / "raw.html").read_text()
    assert "validate_raw: PASSED" in report and f"Quarantined clips ({len(BROKEN)}" in report
    assert sum(quarantined["summary"].values()) > 0  # featurize ran on the accepted clips


def test_feature_contract_passes_on_featurize_output(quarantined, tmp_path):
    result = validate_features(
        quarantined["params"], quarantined["work"] / "features", tmp_path / "f.json", tmp_path / "f.html"
    )
    assert result["success"] and result["failed"] == [] and result["windows"] == sum(quarantined["summary"].values())
    keys = {c["key"] for c in json.loads((tmp_path / "f.json").read_text())["checks"]}
    assert keys >= {"finite", "speaker_one_split"}


def test_feature_contract_catches_nan_zero_variance_and_leakage(quarantined, tmp_path):
    features = tmp_path / "features"
    shutil.copytree(quarantined["work"] / "features", features)
    train = dict(np.load(features / "train.npz"))
    train["x"][3, 10, 5] = np.nan
    np.savez(features / "train.npz", **train)
    stats = read_json(features / "stats.json")
    stats["variance"][7] = 0.0
    write_json(features / "stats.json", stats)
    index = pd.read_csv(features / "index.csv")
    test_speaker = index.loc[index["split"] == "test", "speaker"].iloc[0]
    index.loc[(index["split"] == "train").idxmax(), "speaker"] = test_speaker  # a training clip by a test speaker
    index.to_csv(features / "index.csv", index=False)
    with pytest.raises(ContractError) as err:
        validate_features(quarantined["params"], features, tmp_path / "f.json", tmp_path / "f.html")
    result = read_json(tmp_path / "f.json")
    assert set(result["failed"]) == {"finite", "variance_positive", "speaker_one_split"}
    window = f"train/{train['clip_id'][3]}#{train['copy'][3]}"
    message, report = str(err.value), (tmp_path / "f.html").read_text()
    for text in ("[finite]", window, "[variance_positive]", "mel bin 7", "[speaker_one_split]", "test+train"):
        assert text in message and text.strip("[]") in report, text


@pytest.mark.realdata
def test_real_corpus_passes_except_its_duplicate_recording(ravdess_dir, tmp_path):
    build_manifest(ravdess_dir).to_csv(tmp_path / "manifest.csv", index=False)
    outs = [tmp_path / n for n in ("accepted.csv", "quarantine.csv", "raw.json", "raw.html")]
    dup = ["Actor_07/03-01-03-01-02-01-07.flac", "Actor_07/03-01-03-01-02-02-07.flac"]  # byte-identical upstream
    fail = parse_params(tiny_params(validate={"mode": "fail", "min_rms_dbfs": -70.0}))
    with pytest.raises(ContractError, match=r"\[unique_content\]") as err:
        validate_raw(fail, tmp_path / "manifest.csv", *outs)
    result = read_json(tmp_path / "raw.json")
    duplicates = next(c for c in result["checks"] if c["key"] == "unique_content")
    assert result["failed"] == ["unique_content"] and duplicates["offending"] == dup
    assert all(p in str(err.value) for p in dup) and result["seconds"] < 30
    quarantine = parse_params(tiny_params(validate={"mode": "quarantine", "min_rms_dbfs": -70.0}))
    result = validate_raw(quarantine, tmp_path / "manifest.csv", *outs)
    assert result["success"] and result["accepted"] == 1439
    assert pd.read_csv(tmp_path / "quarantine.csv")["path"].tolist() == dup[1:]
