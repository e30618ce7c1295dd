"""The serving engine: the exported graph runs without the training stack, and packaging refuses what it cannot
export or a stale export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.support import make_tiny_model, tiny_params, tone

TRAINING_STACK = ("tensorflow", "keras", "librosa", "numba", "llvmlite")

PROBE = """
import asyncio, json, sys
from pathlib import Path
import ser.serving.service as service
from ser.serving.predict import predict_local
svc = service.EmotionService()
served = asyncio.run(svc.predict(audio=Path(sys.argv[1])))
local = predict_local([Path(sys.argv[1])], Path(sys.argv[2]))[0]
assert served.label and local["label"], (served, local)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3].split(",")))))
"""


def test_the_service_and_ser_predict_import_no_training_stack(tmp_path):
    """A fresh process that starts the service, answers a request and runs `ser predict` has imported none of
    TensorFlow, Keras, librosa, numba or llvmlite."""
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-c", "from tests.support import package_tiny_model as p; from pathlib import Path; "
         f"p(Path({str(tmp_path)!r}), stats_head=True)"],
        env=env, cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    sf.write(tmp_path / "clip.wav", tone(2.0), 16000)
    args = [str(tmp_path / "clip.wav"), str(tmp_path / "models"), ",".join(TRAINING_STACK)]
    probe = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=REPO, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == []


def test_package_refuses_a_model_without_its_export_or_with_a_stale_one(tmp_path, monkeypatch):
    from ser.io import write_json
    from ser.serving.package import PackageError, package

    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    model_dir = make_tiny_model(tmp_path / "models")
    write_json(tmp_path / "metrics.json", {"accuracy": 0.5, "uar": 0.5, "macro_f1": 0.5, "gates_passed": True})
    args = (tiny_params(), model_dir, tmp_path / "metrics.json", tmp_path / "package.json")
    other = make_tiny_model(tmp_path / "other", seed=1)
    (model_dir / "model.onnx").write_bytes((other / "model.onnx").read_bytes())
    with pytest.raises(PackageError, match="model.onnx was exported from another model.keras; run `ser export`"):
        package(*args, lock_path=tmp_path / "dvc.lock", gate_path=None, card_path=None)
    (model_dir / "model.onnx").unlink()
    with pytest.raises(PackageError, match=r"missing model.onnx; run the train stage \(or `ser export`\) first"):
        package(*args, lock_path=tmp_path / "dvc.lock", gate_path=None, card_path=None)


def test_a_layer_without_an_onnx_mapping_is_named(tmp_path):
    import keras

    from ser.config import FeatureParams
    from ser.training.onnx_export import UnsupportedLayer, inference_graph
    from tests.support import FEATURES

    inputs = keras.Input((63, 16))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GRU(4, name="gru_here")(inputs))
    with pytest.raises(UnsupportedLayer, match="layer gru_here: GRU has no ONNX mapping"):
        inference_graph(keras.Model(inputs, outputs), FeatureParams(**FEATURES))


def test_int8_answers_near_fp32(tmp_path):
    from ser.serving.predictor import Predictor

    model_dir = make_tiny_model(tmp_path / "models", members=2, stats_head=True)
    fp32, int8 = Predictor(model_dir, warm=False), Predictor(model_dir, warm=False, precision="int8")
    x = fp32.featurize(tone(3.0)[:, 0])[0]
    assert np.abs(fp32.infer(x) - int8.infer(x)).max() < 0.05
