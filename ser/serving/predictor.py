"""The inference engine behind the service and `ser predict`: windows, the front end, one onnxruntime call.

`Predictor` runs a model folder's `model.onnx` (`ser.serving.export`: the feature kind's arithmetic, e.g. the
Whisper encoder, and the classifier with every ensemble member and the statistics head, in one graph) with
onnxruntime, after the NumPy front end (`ser.features.frontend`: speech level and log-mel). Neither imports
TensorFlow, Keras, librosa or numba: a process starts and answers in well under a second. Windows are cut by
`ser.audio` exactly as in training: a clip up to `offset + duration` long gets the training window; longer
clips get a window every `window_hop_s` and an aggregate (mean of the window probabilities). A clip no
longer than the window is scored whole (offset 0); one a little longer gets the training window, and
`window_notes` says which lead-in was left out. Each call returns the windows' probabilities and their clip
statistics (what a calibration profile re-standardises and the enrolment head reads). A model packaged with
a speaker-enrolment head (`enrolment.npz`) also scores one speaker's clips together (`run_speaker`).

    predictor = Predictor(Path(model.path), hop_s=1.75)
    frontend, starts = predictor.featurize(wave)
    result = predictor.summarise(predictor.infer(frontend), starts)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ser.audio import fixed_window, sliding_windows, window_start
from ser.config import FeatureParams
from ser.features.frontend import Frontend
from ser.io import read_json
from ser.serving.export import PRECISION_FILES
from ser.serving.profiles import Profile, load_profiles, restrict
from ser.training.enrolment import FILE as ENROLMENT_FILE
from ser.training.enrolment import EnrolmentHead, speaker_probs

FRONTEND_CHUNK = 32  # windows per front-end pass: bounds the STFT's float64 temporaries on long files


class ModelFolderError(FileNotFoundError):
    """The model folder lacks what serving runs (named in the message)."""


def split_rows(rows: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """`rows` (the parts' rows, concatenated) cut back into one array per part."""
    bounds = np.cumsum([0] + [len(p) for p in parts])
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class ClipWindows:
    """How a clip becomes model windows and how window probabilities become an answer (no model inside).

    Args:
        params: the model's feature parameters (preprocess.json `features`).
        classes: class names in the model's output order.
        hop_s: hop between windows of a long clip, in seconds.
    """

    def __init__(self, params: FeatureParams, classes: list[str], hop_s: float = 1.75) -> None:
        self.params, self.classes, self.hop_s = params, list(classes), hop_s

    def windows(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """(n, samples) windows of a mono wave at the model rate, and their start times in seconds."""
        p = self.params
        start = self.start(wave)
        if wave.shape[0] <= round((start + p.duration) * p.sample_rate):
            return fixed_window(wave, p.sample_rate, start, p.duration)[None], [start]
        batch = sliding_windows(wave, p.sample_rate, p.duration, self.hop_s)
        step = max(1, int(round(self.hop_s * p.sample_rate)))
        return batch, [i * step / p.sample_rate for i in range(len(batch))]

    def window_count(self, seconds: float) -> int:
        """How many windows `windows` makes of a clip lasting `seconds` (at most: a late start can save one)."""
        p = self.params
        n, length = round(seconds * p.sample_rate), round(p.duration * p.sample_rate)
        step = max(1, int(round(self.hop_s * p.sample_rate)))
        return 1 if n <= length else -(-(n - length + step) // step)

    def start(self, wave: np.ndarray) -> float:
        """Where a clip's one window starts: as in training (`ser.audio.window_start`); with `align: fixed`, at 0
        when the whole clip fits the window."""
        p = self.params
        if p.align == "fixed" and wave.shape[0] <= round(p.duration * p.sample_rate):
            return 0.0
        return window_start(wave, p.sample_rate, p.offset, p.align)

    def window_notes(self, wave: np.ndarray) -> list[str]:
        """What the windowing leaves out of a clip, said in words (empty when nothing)."""
        p = self.params
        start = self.start(wave)
        if start <= 0 or wave.shape[0] > round((start + p.duration) * p.sample_rate):
            return []
        return [
            f"the first {start:g} s is not scored: the model's {p.duration:g} s window starts there, as in training"
        ]

    def summarise(
        self, probs: np.ndarray, starts: list[float], duration_s: float | None = None, classes: list[str] | None = None
    ) -> dict:
        """Label, probabilities, per-window predictions and the aggregate as plain Python; `classes` names the
        columns of `probs` when they are a subset of the model's (`ser.serving.profiles.restrict`)."""
        classes = self.classes if classes is None else classes
        mean = probs.mean(axis=0)
        end_cap = duration_s if duration_s is not None else float("inf")
        windows = [
            {
                "start_s": round(s, 3),
                "end_s": round(min(s + self.params.duration, max(end_cap, s)), 3),
                "label": classes[int(p.argmax())],
                "probabilities": named(classes, p),
            }
            for s, p in zip(starts, probs, strict=True)
        ]
        return {"label": classes[int(mean.argmax())], "probabilities": named(classes, mean), "windows": windows}

    def answer(
        self, probs: np.ndarray, stats: np.ndarray | None, profile: Profile | None, keep: list[int] | None
    ) -> tuple[np.ndarray, list[str]]:
        """Window probabilities as a request asked for them: re-standardised by a calibration `profile` (on the
        windows' clip `stats`), then restricted to the `keep` classes (renormalised); with the classes answered."""
        if profile is not None:
            probs = profile.apply(probs, stats=stats)
        classes = self.classes if keep is None else [self.classes[i] for i in keep]
        return restrict(probs, keep), classes


def named(classes: list[str], probs: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 6) for c, v in zip(classes, probs, strict=True)}


class Predictor(ClipWindows):
    """The exported model of one model folder (model.onnx, frontend.npz, preprocess.json), run by onnxruntime.

    Args:
        model_dir: the folder (the train stage's `models/`, or a packaged BentoML model's).
        hop_s: hop between windows of a long clip, in seconds.
        threads: onnxruntime intra-op threads (default: $SER_THREADS or the CPU count).
        max_batch: the most windows one graph call takes (more are split).
        warm: run the graph once now (a server), so the first request does not pay for its allocations.
        precision: `fp32` (model.onnx) or `int8` (model.int8.onnx, its matrix products quantised).
    """

    def __init__(
        self,
        model_dir: Path,
        hop_s: float = 1.75,
        threads: int | None = None,
        max_batch: int = 32,
        warm: bool = True,
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort
        from threadpoolctl import threadpool_limits

        # one BLAS thread for the front end's mel projection: requests run their front ends in parallel threads
        threadpool_limits(1, user_api="blas")
        model_dir = Path(model_dir)
        graph = model_dir / PRECISION_FILES[precision]
        if not graph.is_file():
            raise ModelFolderError(f"{model_dir}: no {graph.name}; run `ser export --model-dir {model_dir}` first")
        preprocess = read_json(model_dir / "preprocess.json")
        # validated when trained; validating again would import the feature kind's module (numba, librosa)
        super().__init__(FeatureParams.model_construct(**preprocess["features"]), preprocess["classes"], hop_s)
        self.frontend = Frontend.load(model_dir)
        self.shape = self.frontend.shape
        self.max_batch = max(1, max_batch)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("SER_THREADS", 0)) or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # no spin-waiting between calls: the request threads (decode, front end, HTTP) need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        gpu = "CUDAExecutionProvider" in ort.get_available_providers()  # TF=gpu installs onnxruntime-gpu
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(graph), options, providers=providers)
        self.input = self.session.get_inputs()[0].name
        enrolment = model_dir / ENROLMENT_FILE
        self.enrolment = EnrolmentHead.load(enrolment) if enrolment.is_file() else None  # /predict_speaker's head
        self.profiles = load_profiles(model_dir)  # domain calibrations (`ser calibrate`), by name
        if warm:
            self.run(np.zeros((self.max_batch, *self.shape), np.float32))

    def featurize(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """The graph input (n, frames, mels) of every window (the front end's output), and the window starts."""
        batch, starts = self.windows(wave)
        chunks = [self.frontend(batch[i : i + FRONTEND_CHUNK]) for i in range(0, len(batch), FRONTEND_CHUNK)]
        return np.concatenate(chunks), starts

    def run(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, clip statistics) of a batch of graph inputs, `max_batch` windows per call."""
        inputs = np.asarray(inputs, np.float32)
        parts = [
            self.session.run(None, {self.input: inputs[i : i + self.max_batch]})
            for i in range(0, len(inputs), self.max_batch)
        ]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) of a batch of graph inputs."""
        return self.run(inputs)[0]

    def run_scored(self, prepared: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Probabilities of several clips' `featurize` outputs in one pass, each with its windows' clip statistics."""
        probs, stats = self.run(np.concatenate(prepared) if len(prepared) > 1 else prepared[0])
        return list(zip(split_rows(probs, prepared), split_rows(stats, prepared), strict=True))

    def run_speaker(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """Enrolment mode: one speaker's clips (`featurize` outputs) in one pass (`speaker_answers`)."""
        return self.speaker_answers(self.run_scored(prepared))

    def speaker_answers(self, scored: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Enrolment mode: each of one speaker's clips' window probabilities averaged with the enrolment head's on
        its statistics minus the speaker's mean (`speaker_probs`); `scored` holds (probabilities, statistics) per clip.

        Raises:
            ValueError: the model has no enrolment head.
        """
        if self.enrolment is None:
            raise ValueError("this model has no enrolment head (enrolment.npz)")
        probs, stats = (np.concatenate(part) for part in zip(*scored, strict=True))
        return speaker_probs(self.enrolment, probs, stats, [len(p) for p, _ in scored])
