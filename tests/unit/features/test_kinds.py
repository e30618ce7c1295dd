"""The feature-kind registry: a new kind is one class plus one line in `KINDS`, and every stage uses it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ser.config import FeatureParams, ParamsError, parse_params
from ser.features import extract, feature_kind, kinds
from ser.features.kinds import FeatureKind, ValueRule
from tests.conftest import tiny_params

FRAME = 160  # samples per frame of the toy kind (10 ms at 16 kHz)


class FrameStats(FeatureKind):
    """A toy kind, as docs/layout.md's example: each 10 ms frame's mean and standard deviation."""

    name = "frame_stats"

    def check(self, params: FeatureParams) -> None:
        if round(params.duration * params.sample_rate) % FRAME:
            raise ValueError(f"kind frame_stats needs whole {FRAME}-sample frames in features.duration")

    def extract(self, waves: np.ndarray, params: FeatureParams) -> np.ndarray:
        frames = np.asarray(waves, np.float32).reshape(len(waves), -1, FRAME)
        return np.stack([frames.mean(-1), frames.std(-1)], axis=-1).astype(np.float32)

    def shape(self, params: FeatureParams) -> tuple[int, int]:
        return round(params.duration * params.sample_rate) // FRAME, 2

    def value_rules(self, params: FeatureParams, db_range: tuple[float, float]) -> list[ValueRule]:
        return [ValueRule("frame_span", "span_db", 1e-9, None)]

    def describe(self, features: dict) -> str:
        return f"mean and std of every 10 ms frame of a {features['duration']} s window"


@pytest.fixture
def frame_stats_kind(monkeypatch):
    """`frame_stats` registered the way a new kind is: its line in `KINDS`."""
    monkeypatch.setitem(kinds.KINDS, "frame_stats", f"{__name__}:FrameStats")
    feature_kind.cache_clear()
    yield
    feature_kind.cache_clear()


def test_every_registered_kind_loads_under_its_own_name():
    for name in kinds.kind_names():
        kind = feature_kind(name)
        assert isinstance(kind, FeatureKind) and kind.name == name
    assert kinds.kind_names()[:2] == ["logmel", "whisper_base"]


def test_params_accept_only_registered_kinds(frame_stats_kind):
    assert parse_params({"features": {"kind": "frame_stats"}}).features.kind == "frame_stats"
    with pytest.raises(ParamsError, match=r"features\.kind: .*unknown feature kind 'wav2vec'.*logmel, whisper_base"):
        parse_params({"features": {"kind": "wav2vec"}})
    with pytest.raises(ParamsError, match="whole 160-sample frames"):  # the kind's own check runs at parse time
        parse_params({"features": {"kind": "frame_stats", "duration": 1.0001}})


def test_extract_dispatches_to_the_kind_and_honours_its_shape(frame_stats_kind):
    params = FeatureParams(kind="frame_stats", duration=0.5)
    waves = np.random.default_rng(0).standard_normal((3, 8000)).astype(np.float32)
    feats = extract(waves, params)
    assert feats.shape == (3, *feature_kind("frame_stats").shape(params)) == (3, 50, 2)
    np.testing.assert_allclose(feats[1, 7], [waves[1, 1120:1280].mean(), waves[1, 1120:1280].std()], rtol=1e-5)


def test_featurize_and_the_feature_contract_run_a_new_kind(frame_stats_kind, tiny_corpus, tmp_path):
    from ser.data.contract import ContractError
    from ser.data.featurize import featurize
    from ser.data.ingest import build_manifest
    from ser.data.validate import validate_features

    raw = tiny_params(features={"kind": "frame_stats", "duration": 1.0}, augment={"copies": 0})
    params = parse_params(raw)
    build_manifest(tiny_corpus, 1).to_csv(tmp_path / "manifest.csv", index=False)
    featurize(params, tmp_path / "manifest.csv", tiny_corpus, tmp_path / "features")
    stats = json.loads((tmp_path / "features" / "stats.json").read_text())
    assert stats["shape"] == [100, 2] and stats["features"]["kind"] == "frame_stats"
    result = validate_features(params, tmp_path / "features", tmp_path / "features.json", tmp_path / "features.html")
    assert result["success"] and "frame_span" in {c["key"] for c in result["checks"]}
    assert "db_span" not in {c["key"] for c in result["checks"]}  # log-mel rules are the logmel kind's alone
    # features that do not have the kind's shape for these params break the contract's shape check
    longer = parse_params({**raw, "features": {**raw["features"], "duration": 2.0}})
    with pytest.raises(ContractError, match=r"\[shape\]"):
        validate_features(longer, tmp_path / "features", tmp_path / "f2.json", tmp_path / "f2.html")


def test_the_model_card_describes_the_input_with_the_kinds_own_words(frame_stats_kind):
    from ser.serving.card import details_section

    preprocess = {"features": {"kind": "frame_stats", "duration": 1.0}, "shape": [100, 2], "classes": ["a", "b"]}
    text = details_section({"model": {}, "train": {}, "augment": {}}, preprocess)
    assert "mean and std of every 10 ms frame of a 1.0 s window" in text
