"""The inference engine behind the service: windows, features, a compiled model call.

`Predictor` loads `model.keras` in Keras safe mode, wraps the model's forward
pass (`training=False`) in one `tf.function` with a fixed (None, frames, mels)
signature, and warms it up, so a request costs one graph call instead of
`model.predict`'s per-call setup. The graph is XLA-compiled
(`jit_compile`, ~3x faster per call on CPU); XLA compiles per batch size, so
batches are zero-padded up to a power of two (1, 2, 4 ... `max_batch`) and
every bucket is compiled once at start-up (about 1 s each). Features come from `ser.features.extract`,
the training code, on windows cut by `ser.audio` exactly as in training: a clip
up to `offset + duration` long gets the training window; longer clips get a
window every `window_hop_s` and an aggregate (mean of the window probabilities). A clip no
longer than the window is scored whole (offset 0); one a little longer gets the training
window, and `window_notes` says which lead-in was left out. A feature kind that is heavy and cheaper in
batches (`batch_across_requests`: the Whisper encoder) is extracted in `run_scored`, over every queued
request's windows at once; a light one (log-mel) in `prepare`, in each request's own thread. A model
packaged with a speaker-enrolment head (`enrolment.npz`) also scores one speaker's clips together
(`run_speaker`, the service's `/predict_speaker`).

    predictor = Predictor(Path(model.path), hop_s=1.75)
    feats, starts = predictor.featurize(wave)
    result = predictor.summarise(predictor.infer(feats), starts)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ser.audio import fixed_window, sliding_windows, window_start
from ser.config import FeatureParams
from ser.features import extract, feature_kind
from ser.io import read_json
from ser.serving.profiles import Profile, load_profiles, restrict
from ser.training.enrolment import FILE as ENROLMENT_FILE
from ser.training.enrolment import EnrolmentHead, speaker_probs
from ser.training.stats_head import clip_stats


def limit_threads(threads: int) -> None:
    """One BLAS thread (requests already run in parallel threads; OpenBLAS's spinning workers cost
    ~10x CPU on the mel matmul of a busy 2-core machine) and `threads` TensorFlow intra-op threads
    (call before the first TF op; TF's pools stay as they are once it has started)."""
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the runtime is already initialised: keep its pools
        pass


def split_rows(rows: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """`rows` (the parts' rows, concatenated) cut back into one array per part."""
    bounds = np.cumsum([0] + [len(p) for p in parts])
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class ClipWindows:
    """How a clip becomes model windows and how window probabilities become an answer (no model inside).

    Shared by `Predictor` (TensorFlow) and `ser.serving.quick.QuickPredictor` (NumPy).

    Args:
        params: the model's feature parameters (preprocess.json `features`).
        classes: class names in the model's output order.
        hop_s: hop between windows of a long clip, in seconds.
    """

    def __init__(self, params: FeatureParams, classes: list[str], hop_s: float = 1.75) -> None:
        self.params, self.classes, self.hop_s = params, list(classes), hop_s

    @property
    def window_samples(self) -> int:
        return int(round(self.params.duration * self.params.sample_rate))

    def windows(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """(n, samples) windows of a mono wave at the model rate, and their start times in seconds."""
        p = self.params
        start = self.start(wave)
        if wave.shape[0] <= round((start + p.duration) * p.sample_rate):
            return fixed_window(wave, p.sample_rate, start, p.duration)[None], [start]
        batch = sliding_windows(wave, p.sample_rate, p.duration, self.hop_s)
        step = max(1, int(round(self.hop_s * p.sample_rate)))
        return batch, [i * step / p.sample_rate for i in range(len(batch))]

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
    """Model, feature parameters and classes of one saved model folder.

    Args:
        model_dir: folder with model.keras and preprocess.json.
        hop_s: hop between windows of a long clip, in seconds.
        threads: TensorFlow intra-op threads (default: $SER_TF_THREADS or the CPU count).
        max_batch: the largest batch one graph call takes (larger inputs are split).
        xla: compile with XLA ($SER_XLA=0 turns it off).
        warm: compile every batch bucket and warm the feature kind now (a server); False for one-off
            use (`ser predict`), where each call compiles what it needs.
    """

    def __init__(
        self,
        model_dir: Path,
        hop_s: float = 1.75,
        threads: int | None = None,
        max_batch: int = 32,
        xla: bool | None = None,
        warm: bool = True,
    ) -> None:
        limit_threads(threads or int(os.environ.get("SER_TF_THREADS", 0)) or os.cpu_count() or 1)
        import tensorflow as tf

        from ser.training.model import load_model

        preprocess = read_json(Path(model_dir) / "preprocess.json")
        super().__init__(FeatureParams(**preprocess["features"]), preprocess["classes"], hop_s)
        self.shape = tuple(preprocess["shape"])
        self.model = load_model(Path(model_dir) / "model.keras")
        xla = os.environ.get("SER_XLA", "1") != "0" if xla is None else xla
        spec = tf.TensorSpec((None, *self.shape), tf.float32)
        self._forward = tf.function(self._call, input_signature=[spec], jit_compile=xla, autograph=False)
        self.buckets = [1 << i for i in range(max(1, max_batch).bit_length())]
        if self.buckets[-1] < max_batch:
            self.buckets.append(max_batch)
        enrolment = Path(model_dir) / ENROLMENT_FILE
        self.enrolment = EnrolmentHead.load(enrolment) if enrolment.is_file() else None  # /predict_speaker's head
        self.profiles = load_profiles(Path(model_dir))  # domain calibrations (`ser calibrate`), by name
        self.kind = kind = feature_kind(self.params.kind)
        kind.use_packaged(Path(model_dir))  # e.g. the frozen encoder's weights: the packaged model's own copy
        if not warm:
            return
        for n in self.buckets:  # compile every bucket now so no request pays for it
            self.infer(np.zeros((n, *self.shape), np.float32))
        kind.warm_up(self.params)  # compiled kernels, weights: loaded now, not in the first request

    def _call(self, x):
        return self.model(x, training=False)

    def featurize(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Model input (n, frames, channels) of every window (`features.extract`), and the window starts."""
        batch, starts = self.windows(wave)
        return extract(batch, self.params), starts

    def prepare(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """What `run_scored` takes for one clip, and the window starts: the windows themselves when the feature
        kind batches its extraction across requests (the Whisper encoder), else their features (log-mel)."""
        if self.kind.batch_across_requests:
            return self.windows(wave)
        return self.featurize(wave)

    def run_scored(self, prepared: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Probabilities of several clips' `prepare` outputs in one pass (one extraction, one graph call), each with
        its windows' clip statistics (what a calibration profile re-standardises; a few ms a batch)."""
        joined = self.joined_features(prepared)
        probs, stats = self.infer(joined), clip_stats(joined)
        return list(zip(split_rows(probs, prepared), split_rows(stats, prepared), strict=True))

    def joined_features(self, prepared: list[np.ndarray]) -> np.ndarray:
        """Several clips' `prepare` outputs as one feature batch (extracted here when the kind batches them)."""
        joined = np.concatenate(prepared) if len(prepared) > 1 else prepared[0]
        return extract(joined, self.params) if self.kind.batch_across_requests else joined

    def run_speaker(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """Enrolment mode: one speaker's clips (`prepare` outputs) in one pass, each window's model probabilities
        averaged with the enrolment head's on its statistics minus the speaker's mean (`speaker_probs`).

        Raises:
            ValueError: the model has no enrolment head.
        """
        if self.enrolment is None:
            raise ValueError("this model has no enrolment head (enrolment.npz)")
        joined = self.joined_features(prepared)
        parts = [len(p) for p in prepared]
        return speaker_probs(self.enrolment, self.infer(joined), clip_stats(joined), parts)

    def infer_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """`infer` over several clips' features at once (one graph call); one probability array per clip."""
        return split_rows(self.infer(np.concatenate(batches) if len(batches) > 1 else batches[0]), batches)

    def infer(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) of a feature batch, through the compiled graph."""
        features = np.asarray(features, np.float32)
        top = self.buckets[-1]
        if len(features) > top:
            return np.concatenate([self.infer(features[i : i + top]) for i in range(0, len(features), top)])
        n = len(features)
        size = next(b for b in self.buckets if b >= n)
        if size > n:
            features = np.concatenate([features, np.zeros((size - n, *features.shape[1:]), np.float32)])
        return self._forward(features).numpy()[:n]
