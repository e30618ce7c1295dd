"""The benchmark's baseline: the service as first written, Keras `model.predict` per request.

Same model, same decoding (`ser.audio.load_audio`) and features (`ser.features.extract`: the
log-mel, or the frozen Whisper encoder one window at a time) as `ser.serving.service`, but no
compiled graph for the model, no batching and no thread limits.

    BENTOML_HOME=... bentoml serve bench.naive_service:NaiveService --port 3001
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml

from ser.audio import fixed_window, load_audio
from ser.config import FeatureParams
from ser.features import extract, feature_kind
from ser.io import read_json

MODEL_REF = bentoml.models.BentoModel(os.environ.get("SER_MODEL_TAG", "ser_emotion:latest"))


@bentoml.service(name="ser_naive_service", workers=1, resources={"cpu": "2"}, logging={"access": {"enabled": False}})
class NaiveService:
    """Decode, features, `model.predict` — one request at a time."""

    model = MODEL_REF

    def __init__(self) -> None:
        from ser.training.model import load_model

        stored = self.model
        preprocess = read_json(Path(stored.path) / "preprocess.json")
        self.classes = preprocess["classes"]
        self.params = FeatureParams(**preprocess["features"])
        self.keras_model = load_model(Path(stored.path) / "model.keras")
        feature_kind(self.params.kind).use_packaged(Path(stored.path))  # e.g. the encoder's packaged weights

    @bentoml.api
    def predict(self, audio: Path) -> dict:
        """Label and probabilities of one clip."""
        p = self.params
        wave = fixed_window(load_audio(audio, p.sample_rate), p.sample_rate, p.offset, p.duration)
        probs = self.keras_model.predict(extract(wave[None], p), verbose=0)[0]
        named = dict(zip(self.classes, probs.tolist(), strict=True))
        return {"label": self.classes[int(probs.argmax())], "probabilities": named}
