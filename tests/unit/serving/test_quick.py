"""`ser predict`'s quick path: the first run saves a NumPy copy of the model, later runs use it without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.cli import app
from ser.serving.quick import QuickPredictor, cache_dir
from tests.support import make_tiny_model, tone


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def predict(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["predict", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def probabilities(results: list[dict]) -> np.ndarray:
    return np.array([list(w["probabilities"].values()) for r in results for w in r["windows"]])


def test_later_runs_agree_with_tensorflow_and_never_import_it(tmp_path):
    model = make_tiny_model(tmp_path / "model", stats_head=True)
    sf.write(tmp_path / "a.wav", tone(0.8), 16000)
    sf.write(tmp_path / "long.wav", tone(5.0), 16000)
    files = [str(tmp_path / "a.wav"), str(tmp_path / "long.wav"), "--model-dir", str(model)]
    assert QuickPredictor.cached(model) is None
    reference = predict(*files, "--engine", "tensorflow")
    assert QuickPredictor.cached(model) is None  # the TensorFlow engine saves nothing
    first = predict(*files)  # auto: loads TensorFlow, saves the copy, answers with it
    assert (cache_dir(model) / "plan.json").is_file()
    assert np.abs(probabilities(first) - probabilities(reference)).max() < 1e-4
    assert [r["label"] for r in first] == [r["label"] for r in reference]
    # A fresh process: the copy answers the same, and TensorFlow (or numba, librosa) is never imported.
    code = (
        "import json, sys\n"
        "from ser.serving.predict import predict_local\n"
        "from pathlib import Path\n"
        f"out = predict_local([Path(sys.argv[1]), Path(sys.argv[2])], Path({str(model)!r}))\n"
        "print(json.dumps({'results': out, 'heavy': sorted(m for m in ('tensorflow', 'keras', 'numba', 'librosa') "
        "if m in sys.modules)}))\n"
    )
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, "-c", code, *files[:2]], capture_output=True, text=True, env=env, check=True)
    later = json.loads(ran.stdout.strip().splitlines()[-1])
    assert later["heavy"] == []
    assert np.abs(probabilities(later["results"]) - probabilities(first)).max() < 1e-6


def test_a_retrained_model_gets_its_own_copy(tmp_path):
    model = make_tiny_model(tmp_path / "model", seed=0)
    sf.write(tmp_path / "a.wav", tone(0.8), 16000)
    before = predict(str(tmp_path / "a.wav"), "--model-dir", str(model), "--engine", "numpy")
    old = cache_dir(model)
    make_tiny_model(tmp_path / "model", seed=5)  # model.keras replaced, same folder
    assert cache_dir(model) != old and QuickPredictor.cached(model) is None
    after = predict(str(tmp_path / "a.wav"), "--model-dir", str(model), "--engine", "numpy")
    reference = predict(str(tmp_path / "a.wav"), "--model-dir", str(model), "--engine", "tensorflow")
    assert not np.allclose(probabilities(before), probabilities(after), atol=1e-4)
    assert np.abs(probabilities(after) - probabilities(reference)).max() < 1e-4


def test_a_model_without_a_numpy_copy_keeps_tensorflow(tmp_path):
    import keras

    from ser.training.model import build_model

    model = make_tiny_model(tmp_path / "model")
    shape = keras.models.load_model(model / "model.keras").input_shape[1:]
    build_model(shape, 3, filters=[2], lstm_units=[2], dense_units=2, frontend="conv2d").save(model / "model.keras")
    sf.write(tmp_path / "a.wav", tone(0.8), 16000)
    answers = predict(str(tmp_path / "a.wav"), "--model-dir", str(model))  # auto: TensorFlow, nothing saved
    assert answers[0]["label"] and not cache_dir(model).exists()
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "a.wav"), "--model-dir", str(model), "--engine", "numpy"]
    )
    assert (
        result.exit_code == 2
        and "no NumPy copy of this model" in result.output
        and "has no NumPy implementation" in result.output
    )
