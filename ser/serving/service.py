"""BentoML service: emotion predictions from uploaded audio (`ser.serving.service:EmotionService`).

Endpoints (HTTP POST, multipart upload of field `audio` / `audios`):

* `/predict` — one clip (wav, flac, ogg, mp3): label, per-class probabilities,
  model version; per-window predictions for clips longer than the model window.
* `/predict_batch` — many clips in one request, one model call.
* `/infer` — log-mel features in, probabilities out, with BentoML adaptive
  batching (`batchable=True`).
* `/livez`, `/readyz`, `/metrics` — BentoML's own.
* `/demo/` — a browser page (upload or record, probability bars, emotion over
  time) that calls `/predict` in this same process (`ser.serving.demo`).

Bad input answers 400 (413 for the upload and duration caps) with a message
naming the problem; the limits come from the `serve` section stored in the
model's metadata at packaging time. `SER_MODEL_TAG` picks the model
(default `ser_emotion:latest`). `SER_BATCHING` picks how `/predict` reaches the
model: `inprocess` (default, `ser.serving.batching.MicroBatcher`: requests that
arrive while the model is busy share the next call), `bentoml` (a self-call
through the adaptively batched `/infer`) or `off` (one call per request).

    bentoml serve ser.serving.service:EmotionService --port 3000
    curl -F audio=@clip.wav http://127.0.0.1:3000/predict
    # the demo page: http://127.0.0.1:3000/demo/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument
from pydantic import BaseModel

from ser.serving.batching import MicroBatcher
from ser.serving.demo import demo_app
from ser.serving.http import BodyLimit, TooLarge, serve_config
from ser.serving.predictor import Predictor
from ser.serving.uploads import Limits, UploadError, check_size, decode_upload

MODEL_TAG = os.environ.get("SER_MODEL_TAG", "ser_emotion:latest")
BATCHING = os.environ.get("SER_BATCHING", "inprocess")
MODEL_REF = bentoml.models.BentoModel(MODEL_TAG)
SERVE = serve_config(MODEL_REF)


class Window(BaseModel):
    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    """What `/predict` answers for one clip."""

    label: str
    probabilities: dict[str, float]
    model_version: str
    duration_s: float
    source_sample_rate: int
    windows: list[Window]
    notes: list[str] = []


def _refuse(err: UploadError, what: str = "") -> BentoMLException:
    message = f"{what}{err}"
    return TooLarge(message) if err.status == 413 else InvalidArgument(message)


@bentoml.service(
    name="ser_emotion_service",
    workers=1,
    resources={"cpu": "2"},
    traffic={"timeout": 60, "max_concurrency": 512},
    logging={"access": {"enabled": os.environ.get("SER_ACCESS_LOG", "0") == "1"}},
)
class EmotionService:
    """Speech emotion recognition from audio files, with the packaged `ser_emotion` model."""

    model = MODEL_REF

    def __init__(self) -> None:
        stored = self.model
        meta = stored.info.metadata
        self.version = str(stored.tag)
        serve = {**SERVE, **meta.get("serve", {})}
        self.limits = Limits.from_serve(serve)
        self.predictor = Predictor(
            Path(stored.path), hop_s=float(serve["window_hop_s"]), max_batch=int(serve["max_batch_size"])
        )
        self.batcher = MicroBatcher(self.predictor.infer_many, self.predictor.buckets[-1])

    def _prepare(self, audio: Path) -> tuple[np.ndarray, list[float], object]:
        """Decode and featurize in the request's own thread (parallel across requests)."""
        clip = decode_upload(audio, self.predictor.params.sample_rate, self.limits)
        features, starts = self.predictor.featurize(clip.wave)
        return features, starts, clip

    def _answer(self, probs: np.ndarray, starts: list[float], clip) -> Prediction:
        summary = self.predictor.summarise(probs, starts, clip.duration_s)
        return Prediction(
            **summary,
            model_version=self.version,
            duration_s=round(clip.duration_s, 3),
            source_sample_rate=clip.source_rate,
            notes=clip.notes,
        )

    @bentoml.api
    async def predict(self, audio: Path) -> Prediction:
        """Predict the emotion of one uploaded clip (per window over time for long clips)."""
        try:
            features, starts, clip = await anyio.to_thread.run_sync(self._prepare, audio)
        except UploadError as err:
            raise _refuse(err) from None
        if BATCHING == "off":
            probs = await anyio.to_thread.run_sync(self.predictor.infer, features)
        elif BATCHING == "bentoml" and hasattr(self, "to_async"):  # served: through BentoML's dispatcher
            probs = np.asarray(await self.to_async.infer(features))
        else:
            probs = await self.batcher.submit(features, size=len(features))
        return self._answer(probs, starts, clip)

    @bentoml.api
    async def predict_batch(self, audios: list[Path]) -> list[Prediction]:
        """Predict many clips in one request; any bad file refuses the request, naming it."""
        if not audios:
            raise InvalidArgument("no files in `audios`: expected one or more audio files")
        try:
            check_size(sum(p.stat().st_size for p in audios), self.limits)
        except UploadError as err:
            raise _refuse(err, "the batch: ") from None
        prepared = []
        for i, audio in enumerate(audios):
            try:
                prepared.append(await anyio.to_thread.run_sync(self._prepare, audio))
            except UploadError as err:
                raise _refuse(err, f"file {i} ({audio.name}): ") from None
        probs = await anyio.to_thread.run_sync(self.predictor.infer_many, [p[0] for p in prepared])
        return [self._answer(pr, p[1], p[2]) for pr, p in zip(probs, prepared, strict=True)]

    @bentoml.api(
        batchable=True, max_batch_size=int(SERVE["max_batch_size"]), max_latency_ms=int(SERVE["max_latency_ms"])
    )
    def infer(self, features: np.ndarray) -> np.ndarray:
        """Probabilities (n, classes) for log-mel features (n, frames, mels); adaptively batched."""
        features = np.asarray(features, np.float32)
        if features.ndim != 3 or features.shape[1:] != self.predictor.shape:
            expected = ", ".join(map(str, self.predictor.shape))
            raise InvalidArgument(f"features of shape {features.shape}; expected (n, {expected})")
        return self.predictor.infer(features)


# @bentoml.service made the class a bentoml.Service; mypy does not apply a class decorator's return type
cast("bentoml.Service[EmotionService]", EmotionService).add_asgi_middleware(
    BodyLimit,
    max_bytes=int(float(SERVE["max_upload_mb"]) * 2**20),
    forms={"/predict": "audio", "/predict_batch": "audios"},
)
cast("bentoml.Service[EmotionService]", EmotionService).mount_asgi_app(demo_app(), path="/demo", name="demo")
