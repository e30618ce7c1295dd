"""`ser predict`'s quick path: a NumPy copy of a saved model, made once, loaded in a fraction of a second.

The first `ser predict` with a model loads it with TensorFlow, as the service does, and then writes a
NumPy copy of it (`ser.serving.numpy_graph`: the Keras graph; `ser.serving.numpy_features`: the feature
kind, the Whisper encoder's weights included) to `$XDG_CACHE_HOME/ser/numpy-models/<key>/` (default
`~/.cache/ser/`), the key being the SHA-256 of model.keras and preprocess.json, so a retrained model gets
a new copy and a stale copy is never used. Later runs load only that copy: no TensorFlow, numba or librosa
import (~0.5 s of imports instead of ~10 s). Probabilities agree with TensorFlow's to ~1e-4
(tests/unit/serving/test_quick.py). A model with a layer the NumPy runtime lacks keeps the TensorFlow path.

    predictor = QuickPredictor.cached(Path("models")) or save_quick(tf_predictor, Path("models"))
    feats, starts = predictor.featurize(wave)
    result = predictor.summarise(predictor.infer(feats), starts)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ser.config import FeatureParams
from ser.io import atomic_path
from ser.serving.numpy_features import features
from ser.serving.numpy_graph import run_graph
from ser.serving.predictor import ClipWindows, Predictor

FORMAT = 1  # bump when the exported layout or the NumPy runtime's meaning changes
CHUNK = 8  # windows per NumPy pass: bounds the encoder's temporaries on long files


def cache_dir(model_dir: Path) -> Path:
    """Where the NumPy copy of the model in `model_dir` lives (keyed by its files' contents)."""
    digest = hashlib.sha256(f"ser-numpy-model-{FORMAT}".encode())
    for name in ("model.keras", "preprocess.json"):
        digest.update(hashlib.sha256((Path(model_dir) / name).read_bytes()).digest())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "ser" / "numpy-models" / digest.hexdigest()[:24]


class QuickPredictor(ClipWindows):
    """`Predictor`'s featurize / infer / summarise, evaluated with NumPy from a cached copy.

    Args:
        folder: a `cache_dir` written by `save_quick`.
        hop_s: hop between windows of a long clip, in seconds.
    """

    def __init__(self, folder: Path, hop_s: float = 1.75) -> None:
        meta = json.loads((folder / "plan.json").read_text())
        # validated when saved; validating again would import every feature kind's module (numba, librosa)
        super().__init__(FeatureParams.model_construct(**meta["params"]), meta["classes"], hop_s)
        self.graph, self.spec = meta["graph"], meta["features"]
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            self.arrays = {k: npz[k] for k in npz.files}

    @classmethod
    def cached(cls, model_dir: Path, hop_s: float = 1.75) -> QuickPredictor | None:
        """The NumPy copy of `model_dir`'s model, or None when none has been saved yet."""
        folder = cache_dir(model_dir)
        return cls(folder, hop_s) if (folder / "plan.json").is_file() else None

    def featurize(self, wave: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """Model input (n, frames, channels) of every window, and the window starts."""
        batch, starts = self.windows(wave)
        parts = [features(self.spec, self.arrays, batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)]
        return np.concatenate(parts), starts

    def infer(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) of a feature batch."""
        return np.concatenate(
            [run_graph(self.graph, self.arrays, feats[i : i + CHUNK]) for i in range(0, len(feats), CHUNK)]
        )


def save_quick(predictor: Predictor, model_dir: Path) -> QuickPredictor:
    """Export a loaded `Predictor`'s model and feature kind to `cache_dir(model_dir)` (atomically).

    Raises:
        UnsupportedModel: a layer without a NumPy implementation (nothing is written).
        ValueError: a feature kind without a NumPy path (nothing is written).
    """
    from ser.serving.numpy_features import export_features
    from ser.serving.numpy_graph import export_graph

    graph, arrays = export_graph(predictor.model)
    spec, feature_arrays = export_features(predictor.params)
    meta = {
        "format": FORMAT,
        "classes": predictor.classes,
        "params": predictor.params.model_dump(),
        "graph": graph,
        "features": spec,
    }
    folder = cache_dir(model_dir)
    with atomic_path(folder) as staging:
        staging.mkdir(parents=True)
        everything: dict[str, Any] = {**arrays, **feature_arrays}
        np.savez(staging / "arrays.npz", **everything)
        (staging / "plan.json").write_text(json.dumps(meta))
    return QuickPredictor(folder, predictor.hop_s)
