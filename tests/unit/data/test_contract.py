"""The raw-corpus contract: each deliberately broken corpus, built from the synthetic
generator, is caught by the intended expectation, named in the error, the JSON result
and the HTML report; RAVDESS's name checks judge RAVDESS-named clips only; the split checks catch leaking
speakers and missing classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser.config import parse_params
from ser.data.contract import ContractError, check_splits
from ser.data.ingest import build_manifest, measure_corpus
from ser.data.splits import assign_splits
from ser.data.validate import validate_raw
from tests.conftest import tiny_params

CLIP = "Actor_01/03-01-05-01-01-01-01.wav"  # angry, actor 1: the clip each case breaks


def params(mode: str = "fail", **split):
    """Tiny params with the contract in `mode` (split overrides optional)."""
    return parse_params(tiny_params(validate={"mode": mode}, split=split))


def checks(result: dict) -> dict:
    """The JSON result's checks by key."""
    return {c["key"]: c for c in result["checks"]}


def copy_corpus(tiny_corpus: Path, dest: Path) -> Path:
    shutil.copytree(tiny_corpus, dest)
    return dest


def run_raw(root: Path, out: Path, p) -> dict:
    """build_manifest -> validate_raw with every output under `out`; return the JSON result."""
    out.mkdir(exist_ok=True)
    build_manifest(root).to_csv(out / "manifest.csv", index=False)
    return validate_raw(
        p, out / "manifest.csv", out / "accepted.csv", out / "quarantine.csv", out / "raw.json", out / "raw.html"
    )


def rewrite(path: Path, change) -> None:
    samples, sr = sf.read(path, dtype="float32")
    samples, sr = change(samples, sr)
    sf.write(path, samples, sr)


def truncate(root: Path) -> str:
    data = (root / CLIP).read_bytes()
    (root / CLIP).write_bytes(data[: len(data) * 2 // 3])
    return CLIP


def duplicate_content(root: Path) -> str:
    dup = "Actor_02/03-01-05-01-01-01-02.wav"  # another clip's file now holds this clip's audio
    shutil.copyfile(root / CLIP, root / dup)
    return dup


def duplicate_clip_id(root: Path) -> str:
    samples, sr = sf.read(root / CLIP)
    sf.write((root / CLIP).with_suffix(".flac"), samples, sr)  # same clip in two formats
    return CLIP


def unknown_emotion(root: Path) -> str:
    bad = "Actor_01/03-01-09-01-01-01-01.wav"
    (root / CLIP).rename(root / bad)
    return bad


def wrong_folder(root: Path) -> str:
    moved = "Actor_02/03-01-05-01-01-01-01.wav"  # the name says actor 1, the folder actor 2
    (root / CLIP).rename(root / moved)
    return moved


BREAKS = {  # case: (break the corpus -> offending path, intended check, other checks it may also trip)
    "truncated": (truncate, "complete", {"decodes"}),
    "sample_rate_8k": (lambda r: rewrite(r / CLIP, lambda s, sr: (s[::2], sr // 2)) or CLIP, "sample_rate", set()),
    "stereo": (lambda r: rewrite(r / CLIP, lambda s, sr: (np.stack([s, s], 1), sr)) or CLIP, "channels", set()),
    "silent": (lambda r: rewrite(r / CLIP, lambda s, sr: (s * 0, sr)) or CLIP, "not_silent", set()),
    "clipped": (lambda r: rewrite(r / CLIP, lambda s, sr: (np.clip(s * 20, -1, 1), sr)) or CLIP, "not_clipped", set()),
    "unknown_emotion_code": (unknown_emotion, "emotion_code", {"emotion_present"}),
    "duplicate_content": (duplicate_content, "unique_content", set()),
    "duplicate_clip_id": (duplicate_clip_id, "unique_clip_id", set()),
    "mislabelled_actor_folder": (wrong_folder, "actor_matches_folder", set()),
}


def test_clean_synthetic_corpus_passes(tmp_path, tiny_corpus):
    result = run_raw(tiny_corpus, tmp_path, params())
    assert result["success"] and result["failed"] == [] and result["accepted"] == result["clips"] == 240
    assert pd.read_csv(tmp_path / "accepted.csv").equals(pd.read_csv(tmp_path / "manifest.csv"))
    assert list(pd.read_csv(tmp_path / "quarantine.csv").columns) == ["path", "clip_id", "failed"]
    assert "validate_raw: PASSED" in (tmp_path / "raw.html").read_text()


@pytest.mark.parametrize("case", list(BREAKS))
def test_broken_corpus_is_caught_by_the_intended_expectation(case, tmp_path, tiny_corpus):
    brk, check, also = BREAKS[case]
    root = copy_corpus(tiny_corpus, tmp_path / "corpus")
    offender = brk(root)
    with pytest.raises(ContractError) as err:
        run_raw(root, tmp_path / "out", params())
    result = json.loads((tmp_path / "out" / "raw.json").read_text())
    assert not result["success"] and set(result["failed"]) - also == {check}
    entry = checks(result)[check]
    assert offender in entry["offending"]
    message = str(err.value)
    line = next(x for x in message.splitlines() if f"[{check}]" in x)
    assert entry["expectation"] in line and offender in line
    report = (tmp_path / "out" / "raw.html").read_text()
    assert "FAILED" in report and check in report and offender in report
    assert not (tmp_path / "out" / "accepted.csv").exists()


def test_duplicate_quarantine_keeps_the_first_copy(tmp_path, tiny_corpus):
    root = copy_corpus(tiny_corpus, tmp_path / "corpus")
    dup = duplicate_content(root)
    result = run_raw(root, tmp_path / "out", params("quarantine"))
    assert result["success"] and result["quarantined"] == 1
    assert set(checks(result)["unique_content"]["offending"]) == {CLIP, dup}  # the report names both copies
    assert pd.read_csv(tmp_path / "out" / "quarantine.csv")["path"].tolist() == [dup]


def test_missing_class_in_test_split_stops_both_modes(tmp_path, tiny_corpus):
    root = copy_corpus(tiny_corpus, tmp_path / "corpus")
    manifest = build_manifest(root)
    split = assign_splits(manifest, params().split)
    for path in manifest.loc[(split == "test") & (manifest["emotion"] == "sad"), "path"]:
        (root / path).unlink()
    for mode in ("fail", "quarantine"):
        with pytest.raises(ContractError, match=r"\[class_in_every_split\].*test/sad"):
            run_raw(root, tmp_path / mode, params(mode))
        assert "test/sad" in (tmp_path / mode / "raw.html").read_text()


def test_random_split_is_exempt_from_the_speaker_check(tmp_path, tiny_corpus):
    # The article's random split puts every speaker's clips in several splits by design: the contract
    # still checks classes per split but not speaker leakage (speaker-independent splits are the default).
    result = run_raw(tiny_corpus, tmp_path, params(method="random"))
    assert result["success"] and "speaker_one_split" not in checks(json.loads((tmp_path / "raw.json").read_text()))
    leak = check_splits(
        pd.DataFrame(
            {"clip_id": ["a", "b"], "speaker": ["x:1"] * 2, "emotion": ["sad"] * 2, "split": ["train", "test"]}
        ),
        ["sad"],
    )[0]
    assert leak.key == "speaker_one_split" and not leak.success


def test_split_check_names_leaking_speaker_and_missing_class():
    rows = [
        (f"c{a}{e}{i}", f"ravdess:{a:02d}", e, s)
        for a, s in ((1, "train"), (2, "val"), (3, "test"))
        for e in ("sad", "angry")
        for i in range(2)
    ]
    table = pd.DataFrame(rows, columns=["clip_id", "speaker", "emotion", "split"])
    assert all(r.success for r in check_splits(table, ["sad", "angry"]))
    table.loc[0, "split"] = "test"  # one clip of speaker 1 leaks into the test split
    table = table[~((table["split"] == "val") & (table["emotion"] == "angry"))]
    leak, missing = check_splits(table, ["sad", "angry"])
    assert not leak.success and leak.offending == ["speaker ravdess:01 in test+train"]
    assert not missing.success and missing.offending == ["val/angry"]


def test_ravdess_name_checks_judge_ravdess_clips_only_and_generic_ones_every_corpus(tmp_path, tiny_corpus):
    from ser.data.synth_labelled import LABELLED_NAMES, generate_labelled_corpus
    from ser.data.validate import validate_raw

    labelled = tmp_path / "labelled"
    generate_labelled_corpus(labelled, n_speakers=5, seed=2)
    both = pd.concat(
        [build_manifest(tiny_corpus), measure_corpus({"path": str(labelled), "emotions": LABELLED_NAMES})[0]],
        ignore_index=True,
    )
    both["path"] = [f"{c}/{p}" for c, p in zip(both["corpus"], both["path"], strict=True)]
    bad = both.index[both["corpus"] == "labelled"][0]
    both.loc[bad, "speaker"] = None  # a labelled clip without a speaker: a generic check catches it
    both.to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "out"
    result = validate_raw(
        params("quarantine"), tmp_path / "manifest.csv", out / "a.csv", out / "q.csv", out / "r.json", out / "r.html"
    )
    by_key = checks(result)
    # the labelled clips have no RAVDESS name fields, and none of RAVDESS's checks fails on them
    for key in ("modality", "emotion_code", "statement", "in_actor_folder", "labels_match_name", "actor_range"):
        assert by_key[key]["success"], key
    assert 'where scheme=="ravdess"' in by_key["modality"]["expectation"]
    assert by_key["speaker_present"]["offending"] == [both.loc[bad, "path"]] and result["quarantined"] == 1
    # the class set is the union: calm and surprised come from the RAVDESS-layout corpus alone
    assert by_key["class_in_every_split"]["success"] and result["accepted"] == len(both) - 1
