"""File-name parsing, the label vocabulary, and params validation."""

from __future__ import annotations

import re

import pytest

from ser.config import ParamsError, load_params, parse_params
from ser.labels import EMOTIONS, LabelError, clip_name, parse_name, select_classes
from tests.conftest import REPO


def test_parse_name_reads_every_field():
    name = parse_name("Actor_12/03-01-05-02-01-02-12.wav")
    assert name.clip_id == "03-01-05-02-01-02-12"
    assert (name.emotion, name.intensity, name.statement, name.repetition, name.actor) == ("angry", "strong", 1, 2, 12)
    assert name.gender == "female"
    assert parse_name("03-01-01-01-02-01-07.flac").gender == "male"


@pytest.mark.parametrize(
    "bad", ["hello.wav", "03-01-05-02-01-01.wav", "03-01-5-02-01-01-12.wav", "x3-01-05-02-01-01-12"]
)
def test_parse_name_rejects_non_ravdess_names(bad):
    with pytest.raises(LabelError, match="expected MM-VV-EE-II-SS-RR-AA"):
        parse_name(bad)


def test_unknown_emotion_code_parses_without_label():
    name = parse_name("03-01-09-01-01-01-01.wav")
    assert name.emotion_code == 9 and name.emotion is None


def test_clip_name_round_trips():
    for emotion in EMOTIONS:
        stem = clip_name(emotion, "strong", 2, 1, 24)
        parsed = parse_name(stem)
        assert (parsed.emotion, parsed.intensity, parsed.statement, parsed.actor) == (emotion, "strong", 2, 24)


def test_select_classes_orders_and_checks():
    assert select_classes([]) == list(EMOTIONS)
    assert select_classes(["sad", "angry", "neutral"]) == ["neutral", "sad", "angry"]
    with pytest.raises(LabelError, match="joy"):
        select_classes(["joy", "sad"])
    with pytest.raises(LabelError, match="two distinct"):
        select_classes(["sad", "sad"])


def test_default_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.corpora == ["synthetic"] and params.data.source is None
    assert params.data.classes == [] and params.data.class_set() == list(EMOTIONS)
    assert params.data.class_set(["sad", "neutral", "sad"]) == ["neutral", "sad"]  # the corpora's union


def test_sources_take_strings_or_mappings_and_name_the_bad_entry():
    data = parse_params({"data": {"sources": ["synthetic", {"path": "x", "emotions": {"W": "angry", "L": None}}]}})
    assert data.data.corpora[1].emotions == {"W": "angry", "L": None}
    assert parse_params({"data": {"source": "ravdess"}}).data.corpora == ["ravdess"]  # the shorthand wins
    for raw, key in [
        ({"sources": [{"path": "x", "emotions": {"W": "joy"}}]}, "data.sources.0.mapping.emotions"),
        ({"sources": [{"path": "x", "use": "sometimes"}]}, "data.sources.0.mapping.use"),
        ({"sources": [{"path": "x", "name": "Has Space"}]}, "data.sources.0.mapping.name"),
        ({"sources": []}, "data.sources"),
    ]:
        with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {key}")):
            parse_params({"data": raw})


def test_the_old_split_keys_say_their_new_names():
    with pytest.raises(ParamsError, match="val_actors: renamed val_speakers"):
        parse_params({"split": {"val_actors": 2}})


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"data": {"classes": ["neutral", "joy"]}}, "data.classes"),
        ({"split": {"test_speakers": -2}}, "split.test_speakers"),
        ({"split": {"method": "random", "val_fraction": 0.5, "test_fraction": 0.6}}, "split"),
        ({"features": {"n_mels": -64}}, "features.n_mels"),
        ({"augment": {"copies": -1}}, "augment.copies"),
        ({"train": {"epochs": 0}}, "train.epochs"),
        ({"model": {"filters": [64, -1]}}, "model.filters"),
        ({"train": {"epoch": 3}}, "train.epoch"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ParamsError) as err:
        parse_params(raw, "params.yaml")
    assert f"params.yaml: {key}" in str(err.value)


def test_refit_is_refused_with_the_plateau_schedule():
    # plateau stops on the validation loss, which a model trained on the validation clips cannot do
    with pytest.raises(ParamsError, match="train.refit needs schedule: cosine"):
        parse_params({"train": {"refit": True, "schedule": "plateau", "average_last": 0}}, "params.yaml")
    assert parse_params({"train": {"refit": True, "schedule": "cosine"}}, "params.yaml").train.refit


def test_missing_or_broken_params_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("data: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")


def test_override_sets_dotted_keys_and_names_bad_ones():
    from ser.config import Params, ParamsError
    from ser.overrides import override

    base = Params()
    changed = override(base, ["train.epochs=3", "model.pooling=attention", "model.filters=[8, 16]"])
    assert (changed.train.epochs, changed.model.pooling, changed.model.filters) == (3, "attention", [8, 16])
    assert base.train.epochs == 40  # the original is untouched
    with pytest.raises(ParamsError, match="train.epoch: no such key"):
        override(base, ["train.epoch=3"])
    with pytest.raises(ParamsError, match="expected key=value"):
        override(base, ["train.epochs"])
    with pytest.raises(ParamsError, match="model.pooling"):
        override(base, ["model.pooling=max"])
