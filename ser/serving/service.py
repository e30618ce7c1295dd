"""BentoML service: emotion predictions from uploaded audio (`ser.serving.service:EmotionService`).

Endpoints (HTTP POST, multipart upload of field `audio` / `audios`):

* `/predict` — one clip (wav, flac, ogg, mp3): label, per-class probabilities,
  model version; per-window predictions for clips longer than the model window. `?profile=NAME`: a calibration
  profile packaged with the model (`ser.serving.profiles`); `?classes=a,b`: answer only those (docs/serving.md).
* `/predict_batch` — many clips in one request.
* `/predict_speaker` — several clips (at least the model's `enrolment.clips`) of one speaker, scored in
  enrolment mode: each clip measured against the speaker's mean (`ser.training.enrolment`); per-clip answers
  and their mean. Needs a model trained with `enrolment.head`.
* `/infer` — the exported graph's input in (the front end's log-mel, `frontend.npz`), probabilities out.
* `/livez`, `/readyz`, `/metrics` — BentoML's own.
* `/demo/` — a browser page (upload or record, probability bars, emotion over time) calling `/predict`.

Bad input answers a 4xx, never a 5xx, in one shape, `{"error": message, "code": code}`
(`ser.serving.codes.CODES` lists the codes), logged as one line, from every layer (`ser.serving.http_guard`: the
HTTP parser's refusals and slow clients). The upload gate (`ser.serving.gate`: bytes, files, read timeouts, upload
slots) and the decoder (`ser.serving.uploads`: formats by content, decoded samples) bound what a request may cost;
every request's model windows are admitted before decoding and scored fairly beside the others'
(`ser.serving.batching.FairBatcher`; 503 `overloaded` with Retry-After when its queue is full). The limits come from
the `serve` section stored in the model's metadata at packaging time. `SER_MODEL_TAG` picks the model (default
`ser_emotion:latest`); `SER_BATCHING=off` scores each request alone (a benchmark baseline: no sharing, no fairness).

    bentoml serve ser.serving.service:EmotionService --port 3000
    curl -F audio=@clip.wav http://127.0.0.1:3000/predict
    # the demo page: http://127.0.0.1:3000/demo/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NamedTuple, TypeAlias, cast

import anyio
import bentoml
import numpy as np
from bentoml.validators import DType, Shape

from ser.serving.answers import Prediction, SpeakerPrediction
from ser.serving.batching import FairBatcher, Overloaded, Reservation
from ser.serving.demo import demo_app
from ser.serving.errors import ClientError, ErrorShape, install_log_filter
from ser.serving.gate import UploadGate, input_shape, serve_config
from ser.serving.http_guard import guard_h11
from ser.serving.malloc import limit_arenas, start_trimming
from ser.serving.memtrace import start_from_env as trace_memory
from ser.serving.predictor import Predictor, split_rows
from ser.serving.profiles import CalibrationError, Profile, class_subset, pick_profile
from ser.serving.timeouts import cancel_request_timers
from ser.serving.uploads import Clip, Limits, SampleBudget, UploadError, decode_upload, header_cost, probe

cancel_request_timers()  # BentoML's per-request timeout timers held each request's objects for 60 s
MODEL_TAG = os.environ.get("SER_MODEL_TAG", "ser_emotion:latest")
BATCHING = os.environ.get("SER_BATCHING", "inprocess")
PRECISION = os.environ.get("SER_PRECISION")  # fp32 | int8: overrides the packaged serve.precision (benchmarks)
MODEL_REF = bentoml.models.BentoModel(MODEL_TAG)
SERVE = serve_config(MODEL_REF)
guard_h11(float(SERVE["read_timeout_s"]))  # h11's refusals in the one shape; a deadline for request heads
INPUT_SHAPE = input_shape(MODEL_REF)
Features: TypeAlias = Annotated[np.ndarray, Shape((-1, *(INPUT_SHAPE or ()))), DType("float32")]


def _refuse(err: UploadError, what: str = "") -> ClientError:  # the decoder's refusal, named for the client
    return ClientError(err.code, f"{what}{err}")


def _file_labels(ctx: bentoml.Context | None, n: int) -> list[str]:
    """`file 3 ('clip.wav'): ` per file: the clients' own names, which the upload gate kept."""
    request = getattr(ctx, "request", None)
    names = getattr(request.state, "upload_names", None) if request is not None else None
    if not isinstance(names, list) or len(names) != n:
        return [f"file {i}: " for i in range(n)]
    return [f"file {i} ({str(name)[:80]!r}): " for i, name in enumerate(names)]


class Prepared(NamedTuple):
    """A request's decoded files (features, window starts, clip) and the model windows reserved for them."""

    items: list[tuple[np.ndarray, list[float], Clip]]
    reservation: Reservation


@bentoml.service(
    name="ser_emotion_service",
    workers=1,
    resources={"cpu": "2"},
    # no max_concurrency: BentoML's answers 429 to everyone once that many requests wait, slow ones included;
    # admission is by cost instead (the upload gate's slots and read timeouts, the fair batcher's queue)
    traffic={"timeout": 60},
    logging={"access": {"enabled": os.environ.get("SER_ACCESS_LOG", "0") == "1"}},
)
class EmotionService:
    """Speech emotion recognition from audio files, with the packaged `ser_emotion` model."""

    model = MODEL_REF

    def __init__(self) -> None:
        limit_arenas()  # before the request threads start: two malloc arenas, not 16 (ser.serving.malloc)
        trace_memory()  # only with $SER_MEMORY_TRACE_DIR (the memory benchmark)
        stored = self.model
        self.version, serve = str(stored.tag), {**SERVE, **stored.info.metadata.get("serve", {})}
        self.limits = Limits.from_serve(serve)
        self.predictor = Predictor(
            Path(stored.path),
            hop_s=float(serve["window_hop_s"]),
            max_batch=int(serve["max_batch_size"]),
            precision=PRECISION or str(serve["precision"]),
        )
        self.batcher = FairBatcher(
            self.predictor.run,
            self.predictor.max_batch,
            quota=int(serve["window_quota"]),
            max_queued=int(serve["max_queued_windows"]),
            gather_s=float(serve["max_latency_ms"]) / 1000,
        )
        self.default_classes = list(serve.get("classes") or [])  # the package's subset (serve.classes)
        start_trimming()  # glibc's free pages back to the system every 5 s (ser.serving.malloc)

    def _prepare(self, audio: Path, budget: SampleBudget, info: object) -> tuple[np.ndarray, list[float], Clip]:
        """Decode, window and run the front end (log-mel) in the request's own thread."""
        clip = decode_upload(audio, self.predictor.params.sample_rate, self.limits, budget, info)
        features, starts = self.predictor.featurize(clip.wave)
        clip.notes.extend(self.predictor.window_notes(clip.wave))
        return features, starts, clip

    def _asked(self, ctx: bentoml.Context | None, profiles: bool = True) -> tuple[Profile | None, list[int] | None]:
        """The request's `?profile=` and `?classes=` (default: the profile's subset, then the package's), checked
        before any decoding: an unknown profile (404) or class (400), or a profile where `profiles` is False (400)."""
        request = getattr(ctx, "request", None)
        query = request.query_params if request is not None else {}
        try:
            profile = pick_profile(self.predictor.profiles, query.get("profile"))
            if profile is not None and not profiles:
                raise ClientError(
                    "bad_query",
                    "profile: /predict_speaker measures each clip against the speaker's own clips; calibration "
                    "profiles apply to /predict and /predict_batch",
                )
            wanted = query.get("classes") or (profile.classes if profile else None) or self.default_classes
            return profile, class_subset(self.predictor.classes, wanted)
        except CalibrationError as err:
            code = "unknown_profile" if str(err).startswith("unknown profile") else "unknown_class"
            raise ClientError(code, str(err)) from None

    def _answer(
        self,
        probs: np.ndarray,
        starts: list[float],
        clip: Clip,
        stats: np.ndarray | None = None,
        asked: tuple[Profile | None, list[int] | None] = (None, None),
    ) -> Prediction:
        probs, classes = self.predictor.answer(probs, stats, *asked)
        if not np.isfinite(probs).all():  # never a null in an answer: refuse instead
            raise ClientError("unscorable", "the model gave no finite scores for this audio; send a speech clip")
        summary = self.predictor.summarise(probs, starts, clip.duration_s, classes)
        duration, rate = round(clip.duration_s, 3), clip.source_rate
        return Prediction(
            **summary, model_version=self.version, duration_s=duration, source_sample_rate=rate, notes=clip.notes
        )

    def _admit(self, windows: int) -> Reservation:
        """Reserve `windows` model windows, or refuse before any decoding: 503 overloaded when the queue is full
        (413 too_costly when one request needs more than it ever holds)."""
        try:
            return self.batcher.reserve(windows)
        except Overloaded as err:
            raise ClientError("overloaded" if err.retry_after_s else "too_costly", str(err)) from None

    async def _score(self, prepared: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(probabilities, statistics) of each prepared clip, through the fair batcher (or alone: SER_BATCHING=off)."""
        rows = np.concatenate(prepared) if len(prepared) > 1 else prepared[0]
        if BATCHING == "off":
            probs, stats = await anyio.to_thread.run_sync(self.predictor.run, rows)
        else:
            probs, stats = await self.batcher.submit(rows)
        return list(zip(split_rows(probs, prepared), split_rows(stats, prepared), strict=True))

    @bentoml.api
    async def predict(self, audio: Path, ctx: bentoml.Context = None) -> Prediction:  # type: ignore[assignment]
        """Predict the emotion of one uploaded clip (per window over time for long clips); `?profile=` a calibration
        profile, `?classes=` the classes to answer."""
        asked = self._asked(ctx)
        prepared = await self._prepare_all([audio], ctx, named=False)
        with prepared.reservation:
            ((probs, stats),) = await self._score([prepared.items[0][0]])
        return self._answer(probs, prepared.items[0][1], prepared.items[0][2], stats, asked)

    async def _prepare_all(self, audios: list[Path], ctx: bentoml.Context | None, named: bool = True) -> Prepared:
        """`_prepare` of every file of a request, under a reservation of its model windows; any bad file refuses
        the request, naming it (by the client's own name where there are several).

        Every header is checked, the request's decoding cost summed and its windows admitted before any file is
        decoded; the caller closes `reservation` once the model has scored them.
        """
        files = _file_labels(ctx, len(audios)) if named else [""] * len(audios)
        infos = []
        for i, audio in enumerate(audios):
            try:
                infos.append(await anyio.to_thread.run_sync(probe, audio, self.limits))
            except UploadError as err:
                raise _refuse(err, files[i]) from None
        budget = SampleBudget(self.limits.max_samples_per_request)
        if sum(map(header_cost, infos)) > budget.cap:  # refused before decoding; then what is decoded is charged
            raise _refuse(budget.refusal(), "the batch: ")
        cap = self.limits.max_duration_s  # the most a file of unknown length may last
        seconds = [min(i.frames / i.samplerate, cap) if header_cost(i) else cap for i in infos]
        reservation = self._admit(sum(map(self.predictor.window_count, seconds)))
        items = []
        try:
            for audio, info in zip(audios, infos, strict=True):
                items.append(await anyio.to_thread.run_sync(self._prepare, audio, budget, info))
        except UploadError as err:
            reservation.close()
            raise _refuse(err, files[len(items)]) from None
        except BaseException:
            reservation.close()
            raise
        return Prepared(items, reservation)

    @bentoml.api
    async def predict_batch(self, audios: list[Path], ctx: bentoml.Context = None) -> list[Prediction]:  # type: ignore[assignment]
        """Predict many clips in one request; any bad file refuses the request, naming it. `?profile=`, `?classes=`
        as for /predict."""
        asked = self._asked(ctx)
        if not audios:
            raise ClientError("empty_upload", "no files in `audios`: expected one or more audio files")
        prepared = await self._prepare_all(audios, ctx)
        with prepared.reservation:
            scored = await self._score([p[0] for p in prepared.items])
        return [self._answer(pr, p[1], p[2], st, asked) for (pr, st), p in zip(scored, prepared.items, strict=True)]

    @bentoml.api
    async def predict_speaker(self, audios: list[Path], ctx: bentoml.Context = None) -> SpeakerPrediction:  # type: ignore[assignment]
        """Enrolment mode: several clips of one speaker scored together, each clip's statistics shifted by
        the speaker's mean over these clips (`ser.training.enrolment`); at least the model's minimum of clips.
        `?classes=` as for /predict; no profile (the speaker's own clips are the reference)."""
        asked = self._asked(ctx, profiles=False)
        head = self.predictor.enrolment
        if head is None:
            raise ClientError(
                "no_enrolment",
                f"model {self.version} has no enrolment head: /predict_speaker needs a model trained with "
                "enrolment.head true; use /predict or /predict_batch",
            )
        if len(audios) < head.min_clips:
            raise ClientError(
                "too_few_clips",
                f"{len(audios)} file(s) in `audios`: /predict_speaker needs at least {head.min_clips} clips of "
                "one speaker (its mean is the reference each clip is measured against)",
            )
        prepared = await self._prepare_all(audios, ctx)
        with prepared.reservation:
            scored = await self._score([p[0] for p in prepared.items])
        probs = self.predictor.speaker_answers(scored)
        clips = [self._answer(pr, p[1], p[2], None, asked) for pr, p in zip(probs, prepared.items, strict=True)]
        classes = list(clips[0].probabilities)
        mean = np.mean([[c.probabilities[k] for k in classes] for c in clips], axis=0)
        return SpeakerPrediction(
            label=classes[int(mean.argmax())],
            probabilities={k: round(float(v), 6) for k, v in zip(classes, mean, strict=True)},
            model_version=self.version,
            reference_clips=len(clips),
            clips=clips,
        )

    @bentoml.api
    async def infer(self, features: Features) -> np.ndarray:
        """Probabilities (n, classes) for graph inputs (n, frames, mels): the front end's log-mel; scored through the
        same fair batcher as uploads. NaN and values beyond +-1e4 (log-mel is in dB) are clipped into range."""
        with np.errstate(over="ignore", invalid="ignore"):
            features = np.asarray(features, np.float32)
        if features.ndim != 3 or features.shape[1:] != self.predictor.shape or not len(features):
            expected = ", ".join(map(str, self.predictor.shape))
            raise ClientError("invalid_input", f"features of shape {features.shape}; expected (n >= 1, {expected})")
        features = np.clip(np.nan_to_num(features, nan=0.0, posinf=1e4, neginf=-1e4), -1e4, 1e4)
        with self._admit(len(features)):
            ((probs, _),) = await self._score([features])
        return np.nan_to_num(probs, nan=0.0)  # never a null in an answer


# @bentoml.service made the class a bentoml.Service; mypy does not apply a class decorator's return type
_SERVICE = cast("bentoml.Service[EmotionService]", EmotionService)
_SERVICE.add_asgi_middleware(ErrorShape)  # outermost: every non-2xx leaves in the one shape
_SERVICE.add_asgi_middleware(
    UploadGate,
    max_bytes=int(float(SERVE["max_upload_mb"]) * 2**20),
    read_timeout=float(SERVE["read_timeout_s"]),
    max_uploads=int(SERVE["max_uploads"]),
    json_routes=("/infer",),
    forms={
        "/predict": ("audio", 1),
        "/predict_batch": ("audios", int(SERVE["max_batch_files"])),
        "/predict_speaker": ("audios", int(SERVE["max_batch_files"])),
    },
)
_SERVICE.mount_asgi_app(demo_app(), path="/demo", name="demo")
install_log_filter()
