"""Ingest: every source lands under data/raw/<corpus>/ with one manifest for all; labelled folders, EmoDB names and
RAVDESS layout are read by their adapters; bad corpora and tables get errors naming the file and line, and never
destroy what an earlier run produced."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.config import DataParams, parse_params
from ser.data.featurize import FeaturizeError, select_clips
from ser.data.ingest import MANIFEST_COLUMNS, IngestError, build_manifest, ingest, read_manifest
from ser.data.sources import resolve_sources
from ser.data.synth_labelled import LABELLED_NAMES, generate_labelled_corpus
from ser.labels import EMOTIONS

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"


def run(tmp_path: Path, data: DataParams) -> pd.DataFrame:
    """ingest into tmp_path/raw, tmp_path/manifest.csv, tmp_path/corpora.json."""
    return ingest(data, tmp_path / "raw", tmp_path / "manifest.csv", tmp_path / "dl", corpora_path=tmp_path / "c.json")


def data(*sources, **more) -> DataParams:
    return parse_params({"data": {"sources": list(sources), **more}}).data


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A generated labelled folder: 2 speakers, its own emotion names, a boredom class."""
    root = tmp_path_factory.mktemp("labelled")
    generate_labelled_corpus(root, n_speakers=2, seed=3)
    return root


def rewrite_table(root: Path, rows: list[list[str]], name: str = "labels.csv") -> Path:
    dest = root.parent / f"{root.name}-edited"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(root, dest)
    with (dest / name).open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return dest


def table_rows(root: Path) -> list[list[str]]:
    with (root / "labels.csv").open() as fh:
        return list(csv.reader(fh))


def test_synthetic_source_writes_audio_manifest_and_corpora(tmp_path):
    frame = run(tmp_path, data("synthetic", synthetic={"n_actors": 2, "seed": 1}))
    assert len(frame) == 120 and list(read_manifest(tmp_path / "manifest.csv").columns) == MANIFEST_COLUMNS
    assert (tmp_path / "raw" / frame.loc[0, "path"]).is_file() and frame.loc[0, "path"].startswith("synthetic/")
    assert frame["name_ok"].all() and frame["decode_error"].isna().all()
    assert set(frame["emotion"]) == set(EMOTIONS) and set(frame["corpus"]) == {"synthetic"}
    assert set(frame["speaker"]) == {"synthetic:01", "synthetic:02"} and set(frame["scheme"]) == {"ravdess"}
    assert frame["clip_id"].str.startswith("synthetic:").all()
    assert (frame["sample_rate"] == 16000).all() and (frame["channels"] == 1).all()
    assert frame["duration_s"].between(2.5, 5).all()
    assert (frame["actor"] == frame["folder_actor"]).all()
    [record] = json.loads((tmp_path / "c.json").read_text())
    assert record["name"] == "synthetic" and record["clips"] == 120 and record["licence"] == "generated"


def test_local_folder_source_copies_any_rate_and_format(tmp_path, tiny_corpus):
    src = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "Actor_01", src / "Actor_01")
    wav = next((src / "Actor_01").glob("*.wav"))
    samples, sr = sf.read(wav)
    sf.write(wav.with_suffix(".flac"), np.repeat(samples[::1], 3), sr * 3)  # a 48 kHz FLAC
    wav.unlink()
    (src / "README.md").write_text("not audio, skipped")
    frame = run(tmp_path, DataParams(source=str(src)))  # the one-corpus shorthand
    assert len(frame) == 60 and set(frame["corpus"]) == {"ravdess"}  # the layout says its kind and name
    flac = frame[frame["format"] == "flac"].iloc[0]
    assert flac["sample_rate"] == 48000 and (tmp_path / "raw" / flac["path"]).is_file()


def test_problem_files_are_recorded_for_validation(tmp_path, tiny_corpus):
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "Actor_02", root / "Actor_02")
    files = sorted((root / "Actor_02").glob("*.wav"))
    data_ = files[0].read_bytes()
    files[0].write_bytes(data_[: len(data_) // 3])  # truncated
    files[1].write_bytes(b"this is text, not audio" * 50)  # non-audio bytes with an audio suffix
    files[2].rename(root / "Actor_02" / "hello.wav")  # badly named
    frame = build_manifest(root).set_index("clip_id")
    assert frame.loc[f"ravdess:{files[0].stem}", "decode_error"].startswith("truncated")
    assert "Format not recognised" in frame.loc[f"ravdess:{files[1].stem}", "decode_error"]
    hello = frame.loc["ravdess:hello"]
    assert not hello["name_ok"] and pd.isna(hello["emotion"]) and hello["speaker"] == "ravdess:02"
    # Featurizing such a manifest stops with every offending file named.
    with pytest.raises(FeaturizeError) as err:
        select_clips(frame.reset_index(), list(EMOTIONS))
    for name in (files[0].name, files[1].name, "hello.wav"):
        assert name in str(err.value)


def test_two_corpora_one_manifest_with_the_labelled_folders_mapping(tmp_path, labelled):
    spec = {"path": str(labelled), "name": "lab", "emotions": LABELLED_NAMES, "language": "xx"}
    frame = run(tmp_path, data("synthetic", spec, synthetic={"n_actors": 2}))
    lab = frame[frame["corpus"] == "lab"]
    assert len(lab) == 2 * 6 * 4 and set(lab["emotion"]) == {v for v in LABELLED_NAMES.values() if v}
    assert set(lab["speaker"]) == {"lab:spk01", "lab:spk02"} and set(lab["gender"]) == {"male", "female"}
    assert set(lab["corpus_label"]) == {k for k, v in LABELLED_NAMES.items() if v} and set(lab["language"]) == {"xx"}
    assert set(lab["scheme"]) == {"table"} and lab["actor"].isna().all()
    assert (tmp_path / "raw/lab/labels.csv").is_file() and (tmp_path / "raw" / lab["path"].iloc[0]).is_file()
    records = {r["name"]: r for r in json.loads((tmp_path / "c.json").read_text())}
    assert records["lab"]["excluded"] == {"boredom": 8}  # left out and counted, never silently
    assert records["lab"]["licence"] == "unknown" and records["lab"]["citation"] == "unknown"
    assert frame["clip_id"].is_unique and len(frame) == 120 + 48


def test_emodb_names_are_read_by_their_adapter(tmp_path, tiny_corpus):
    root = tmp_path / "emodb-like" / "wav"
    root.mkdir(parents=True)
    sources = sorted((tiny_corpus / "Actor_01").glob("*.wav"))
    for name, src in zip(["03a01Wa", "03a01Fb", "08b02Tc", "08a04Lc", "09a05Nd"], sources, strict=False):
        shutil.copy(src, root / f"{name}.wav")
    frame = run(tmp_path, data(str(root.parent)))
    assert set(frame["corpus"]) == {"emodb"} and set(frame["scheme"]) == {"emodb"}
    assert dict(zip(frame["clip_id"], frame["emotion"], strict=True)) == {
        "emodb:03a01Wa": "angry",
        "emodb:03a01Fb": "happy",
        "emodb:08b02Tc": "sad",
        "emodb:09a05Nd": "neutral",
    }
    assert dict(zip(frame["speaker"], frame["gender"], strict=True)) == {
        "emodb:03": "male",
        "emodb:08": "female",
        "emodb:09": "female",
    }
    [record] = json.loads((tmp_path / "c.json").read_text())
    assert record["excluded"] == {"L (boredom)": 1} and record["language"] == "de" and record["licence"] == "CC0-1.0"


def test_an_unchanged_corpus_is_kept_when_another_is_added(tmp_path, labelled, caplog):
    run(tmp_path, data("synthetic", synthetic={"n_actors": 1}))
    first = read_manifest(tmp_path / "manifest.csv")
    clip = tmp_path / "raw" / first.loc[0, "path"]
    inode = clip.stat().st_ino
    caplog.set_level("INFO")
    both = run(
        tmp_path, data("synthetic", {"path": str(labelled), "emotions": LABELLED_NAMES}, synthetic={"n_actors": 1})
    )
    assert "synthetic: unchanged since the last run" in caplog.text
    assert clip.stat().st_ino == inode  # linked, not copied or generated again
    kept = read_manifest(tmp_path / "manifest.csv").iloc[: len(first)]
    pd.testing.assert_frame_equal(kept, first, check_dtype=False)  # the other corpus's gaps make floats
    assert set(both["corpus"]) == {"synthetic", labelled.name}  # a labelled folder's default name: the folder's


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda rows: rows + [["audio/spk01/999.wav", "anger", "spk01", "m"]],
            r"line 58: audio/spk01/999.wav not found",
        ),
        (lambda rows: rows + [rows[1]], r"line 58: audio/spk01/001.wav is listed twice \(first on line 2\)"),
        (lambda rows: rows[:1] + [[rows[1][0], "Wut", "spk01", "m"]] + rows[2:], r"line 2: emotion 'Wut' is neither"),
        (lambda rows: [[r[0], r[1], r[3]] for r in rows], r"line 1: no `speaker` column"),
        (lambda rows: rows[:1], r"no labelled clips"),
        (lambda rows: rows[:1] + [[rows[1][0], "anger", "spk01", "x"]] + rows[2:], r"line 2: gender 'x'"),
        (
            lambda rows: rows[:1] + [["../secret.wav", "anger", "spk01", "m"]] + rows[2:],
            r"line 2: path '../secret.wav'",
        ),
    ],
    ids=["missing-file", "duplicate", "unknown-emotion", "no-speaker", "empty", "bad-gender", "outside"],
)
def test_a_bad_labels_table_stops_ingest_naming_file_and_line(tmp_path, labelled, edit, message):
    run(tmp_path, data("synthetic", synthetic={"n_actors": 1}))
    before = (tmp_path / "manifest.csv").read_bytes(), (tmp_path / "c.json").read_bytes()
    folder = rewrite_table(labelled, edit(table_rows(labelled)))
    with pytest.raises(IngestError, match=message) as err:
        run(tmp_path, data("synthetic", {"path": str(folder), "emotions": LABELLED_NAMES}, synthetic={"n_actors": 1}))
    assert "labels.csv" in str(err.value)
    assert ((tmp_path / "manifest.csv").read_bytes(), (tmp_path / "c.json").read_bytes()) == before
    assert len(list((tmp_path / "raw").rglob("*.wav"))) == 60 and not list(tmp_path.glob(".*tmp*"))


def test_bad_sources_fail_clearly_and_keep_earlier_output(tmp_path, labelled):
    run(tmp_path, data("synthetic", synthetic={"n_actors": 1}))
    before = (tmp_path / "manifest.csv").read_bytes()
    (tmp_path / "empty" / "Actor_01").mkdir(parents=True)
    with pytest.raises(IngestError, match=r"empty.*no audio files"):
        run(tmp_path, DataParams(source=str(tmp_path / "empty")))
    with pytest.raises(IngestError, match=r"data.source: folder .*nowhere does not exist"):
        run(tmp_path, DataParams(source=str(tmp_path / "nowhere")))
    (tmp_path / "plain").mkdir()
    sf.write(tmp_path / "plain" / "a.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(IngestError, match=r"data.sources\[1\]: .*plain: cannot tell the corpus's layout"):
        run(tmp_path, data("synthetic", str(tmp_path / "plain")))
    with pytest.raises(IngestError, match=r"more than one corpus named \['synthetic'\]"):
        run(tmp_path, data("synthetic", "synthetic"))
    assert (tmp_path / "manifest.csv").read_bytes() == before
    assert len(list((tmp_path / "raw").rglob("*.wav"))) == 60 and not list(tmp_path.glob(".*tmp*"))


def test_names_kinds_and_the_shorthand(labelled):
    names = [s.name for s in resolve_sources(data("synthetic", {"path": str(labelled), "name": "mine"}))]
    assert names == ["synthetic", "mine"]
    assert [s.kind for s in resolve_sources(DataParams(source=str(labelled)))] == ["labelled"]
    assert [s.name for s in resolve_sources(DataParams(sources=["synthetic"], source="ravdess"))] == ["ravdess"]


@pytest.mark.realdata
def test_real_ravdess_manifest(ravdess_dir):
    frame = build_manifest(ravdess_dir)
    assert len(frame) == 1440 and frame["speaker"].nunique() == 24
    assert frame["decode_error"].isna().all() and frame["name_ok"].all()
    assert frame.groupby("emotion").size().to_dict()["neutral"] == 96


@pytest.mark.realdata
def test_real_emodb_manifest():
    if not (SHARED / "emodb-16k" / "wav").is_dir():
        pytest.skip("EmoDB not found beside the checkout")
    from ser.data.ingest import measure_corpus

    frame, record = measure_corpus(SHARED / "emodb-16k")
    assert len(frame) == 454 and frame["speaker"].nunique() == 10 and record["excluded"] == {"L (boredom)": 81}
    labels = pd.read_csv(SHARED / "emodb-16k" / "LABELS.tsv", sep="\t")
    ours = dict(zip(frame["path"], frame["emotion"], strict=True))
    assert all(ours[p] == e for p, e in zip(labels["path"], labels["emotion"], strict=True))  # the table agrees
