"""`ser predict` on a local model: tables and JSON, a timeline for long files, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.cli import app
from tests.support import CLASSES, FEATURES, PEAK, flac_of_unknown_length, float_wav, make_tiny_model, tone


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):  # the model's NumPy copy (ser.serving.quick) goes here, not to ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model"))


def test_predict_short_and_long_files(model_dir, tmp_path):
    # The tiny model's window is 1 s: a 0.8 s clip is one window, a 6 s clip a timeline.
    sf.write(tmp_path / "short.wav", tone(0.8), 16000)
    sf.write(tmp_path / "long.flac", tone(6.0), 16000)
    args = ["predict", str(tmp_path / "short.wav"), str(tmp_path / "long.flac"), "--model-dir", str(model_dir)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    short, long = json.loads(result.output)
    assert len(short["windows"]) == 1 and len(long["windows"]) == 4  # 6 s, windows every 1.75 s
    assert abs(sum(short["probabilities"].values()) - 1) < 1e-3
    assert short["label"] == max(short["probabilities"], key=short["probabilities"].get)
    probs = np.array([list(w["probabilities"].values()) for w in long["windows"]]).mean(axis=0)
    assert np.allclose(probs, list(long["probabilities"].values()), atol=1e-5)  # aggregate = window mean
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "per window" in table.output and short["label"] in table.output


def test_predict_names_a_bad_file(model_dir, tmp_path):
    (tmp_path / "notaudio.wav").write_text("hello")
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "notaudio.wav"), "--model-dir", str(model_dir)])
    assert result.exit_code == 2 and "notaudio.wav: not a readable audio file" in result.output


def test_one_bad_file_does_not_cost_the_good_ones_their_answers(model_dir, tmp_path):
    """The two files that broke `ser predict` (a FLAC of unknown length, a 3e17 peak) are scored too."""
    (tmp_path / "bad.wav").write_bytes(b"junk" * 10)
    (tmp_path / "stream.flac").write_bytes(flac_of_unknown_length(2.0))
    (tmp_path / "loud.wav").write_bytes(float_wav(PEAK))
    sf.write(tmp_path / "good.wav", tone(1.0), 16000)
    names = ["bad.wav", "stream.flac", "loud.wav", "good.wav"]
    argv = ["predict", *(str(tmp_path / n) for n in names), "--model-dir", str(model_dir), "--json"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    answers = json.loads(result.output)
    assert [a["file"].rsplit("/", 1)[-1] for a in answers] == names
    assert answers[0]["code"] == "unsupported_format" and "label" not in answers[0]
    assert all(a["label"] in CLASSES for a in answers[1:]), answers
    assert answers[1]["duration_s"] == 2.0 and any("scaled down" in n for n in answers[2]["notes"])


def test_predict_without_a_model(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0), 16000)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "a.wav"), "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no model.onnx" in result.output


def keras_side(model_dir, wave):
    """The Keras model and the training features (`features.extract`) of the windows the predictor cuts."""
    from ser.config import FeatureParams
    from ser.features import extract
    from ser.serving.predictor import Predictor
    from ser.training.model import load_model

    predictor = Predictor(model_dir, max_batch=4)
    return (
        predictor,
        load_model(model_dir / "model.keras"),
        extract(predictor.windows(wave)[0], FeatureParams(**FEATURES)),
    )


def test_an_ensemble_serves_the_mean_of_its_members(tmp_path):
    wave = tone(3.0)[:, 0]  # 3 s: a timeline of windows
    predictor, model, features = keras_side(make_tiny_model(tmp_path / "ensemble", members=2), wave)
    members = [np.asarray(model.get_layer(f"cnn_lstm_{i}")(features)) for i in range(2)]
    assert not np.allclose(members[0], members[1])
    assert np.allclose(predictor.infer(predictor.featurize(wave)[0]), np.mean(members, axis=0), atol=1e-5)


def test_a_model_with_a_statistics_head_serves_the_mean_of_both(tmp_path):
    wave = tone(3.0)[:, 0]
    predictor, model, features = keras_side(make_tiny_model(tmp_path / "stats", stats_head=True), wave)
    parts = [np.asarray(model.get_layer(name)(features)) for name in ("cnn_lstm_0", "stats_head")]
    assert not np.allclose(parts[0], parts[1])
    assert np.allclose(predictor.infer(predictor.featurize(wave)[0]), np.mean(parts, axis=0), atol=1e-5)


def test_predict_speaker_scores_the_files_together_as_the_service_does(tmp_path):
    """`--speaker`: each file's model probabilities averaged with the enrolment head's, on the clip's statistics
    minus the mean over the files; computed here from Keras on the training features."""
    from ser.training.enrolment import FILE, EnrolmentHead
    from ser.training.stats_head import clip_stats

    model_dir = make_tiny_model(tmp_path / "model", enrolment=True)
    paths = []
    for i, (seconds, freq) in enumerate([(0.8, 180.0), (0.9, 240.0), (1.0, 300.0), (3.0, 200.0)]):
        sf.write(tmp_path / f"{i}.wav", tone(seconds, freq=freq), 16000)
        paths.append(tmp_path / f"{i}.wav")
    result = CliRunner().invoke(
        app, ["predict", "--speaker", *map(str, paths), "--model-dir", str(model_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    sides = [keras_side(model_dir, sf.read(p, dtype="float32")[0]) for p in paths]
    head = EnrolmentHead.load(model_dir / FILE)
    mean = np.mean([clip_stats(f).mean(0) for _, _, f in sides], axis=0)
    for answer, (_, model, f) in zip(answers, sides, strict=True):
        expected = head.fuse(np.asarray(model(f)), clip_stats(f), mean)
        got = np.array([[w["probabilities"][c] for c in CLASSES] for w in answer["windows"]])
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_predict_speaker_refuses_too_few_files_and_a_model_without_a_head(model_dir, tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", tone(0.8), 16000)
    files = [str(tmp_path / f"{i}.wav") for i in range(3)]
    enrolled = make_tiny_model(tmp_path / "enrolled", enrolment=True)
    few = CliRunner().invoke(app, ["predict", "--speaker", *files, "--model-dir", str(enrolled)])
    assert few.exit_code != 0 and "enrolment needs at least 4 clips of one speaker" in few.output
    plain = CliRunner().invoke(app, ["predict", "--speaker", *files, files[0], "--model-dir", str(model_dir)])
    assert (
        plain.exit_code != 0 and "no enrolment.npz; --speaker needs a model trained with enrolment.head" in plain.output
    )
