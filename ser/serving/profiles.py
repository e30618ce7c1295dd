"""Domain-calibration profiles: the statistics head's standardisation re-estimated from a deployment's own clips.

A model trained in studios meets other microphones, rooms and voices; much of what it then gets wrong is a shift
of its clip statistics (each clip's per-channel mean and std of the encoder states, `clip_stats`) that the
deployment's own audio shows without any label. A profile replaces the statistics head's training-set mean
(and, where chosen, scale) of those statistics by the deployment's, shrunk toward the training values by the
number of clips it saw (`estimate`): N clips move the mean by N / (N + `shrink`). The CNN-LSTM's inputs are not
re-estimated: it already removes each clip's own channel means (`model.utterance_norm`) and each frame's offset
and gain (`features.frame_norm`). Labels are never read.

A profile (`Profile`, saved as `<model>/profiles/<name>.npz` by `ser calibrate`, `ser.serving.calibrate`) takes
the head's plain answer out of the model's and puts the re-standardised head in, with the share `share`
(`calibrate.head_share`: 1, the calibrated head alone, chosen on validation speakers; None keeps the head's share
in the model), on any engine: it needs only the model's window probabilities and the windows' clip statistics.
`class_subset` / `restrict` answer a subset of the classes.

    mean, scale = estimate(stats, head.mean, head.scale, shrink=10, scale_too=False)
    probs = Profile("studio-b", mean, scale, head).apply(model_probs, feats)
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser.io import atomic_path

log = logging.getLogger(__name__)


def estimate(
    stats: np.ndarray, train_mean: np.ndarray, train_scale: np.ndarray, shrink: float, scale_too: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The standardisation (mean, scale) of clip statistics for a deployment, from its clips' `stats` (N, dims).

    The mean moves from the training mean toward the clips' by N / (N + shrink); with `scale_too`, the variance
    likewise (by N / (N + 3 shrink): a variance needs more clips than a mean for the same error).
    """
    stats = np.asarray(stats, np.float64)
    n = len(stats)
    w = n / (n + shrink) if shrink > 0 else 1.0
    mean = (1 - w) * np.asarray(train_mean, np.float64) + w * stats.mean(0)
    scale = np.asarray(train_scale, np.float64)
    if scale_too and n > 1:
        ws = n / (n + 3 * shrink) if shrink > 0 else 1.0
        scale = np.sqrt((1 - ws) * scale**2 + ws * np.maximum(stats.var(0), 1e-12))
    return mean.astype(np.float32), scale.astype(np.float32)


class CalibrationError(ValueError):
    """A calibration set or profile that cannot be used (named, with what was expected); nothing is written."""


PROFILE_DIR = "profiles"  # beside model.keras, in the run's models/ and in the packaged model
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class StatsHead:
    """The model's statistics head in NumPy: standardise clip statistics, linear, softmax; `weight` is its share in
    the model's average (1/2 beside a CNN-LSTM)."""

    mean: np.ndarray
    scale: np.ndarray
    kernel: np.ndarray  # (dims, classes)
    bias: np.ndarray
    weight: float

    def probs(self, stats: np.ndarray, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> np.ndarray:
        """(rows, dims) clip statistics -> (rows, classes), standardised with (`mean`, `scale`) or the training's."""
        mean = self.mean if mean is None else mean
        scale = self.scale if scale is None else scale
        logits = ((np.asarray(stats, np.float32) - mean) / scale) @ self.kernel + self.bias
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    @classmethod
    def of(cls, model) -> StatsHead:
        """From a loaded Keras model holding a `stats_head` part (`ser.training.stats_head.linear_head`).

        Raises:
            CalibrationError: the model has none (trained with `model.stats_head` false).
        """
        parts = [layer for layer in model.layers if hasattr(layer, "layers")]
        head = next((p for p in parts if p.name == "stats_head"), None)
        if head is None:
            raise CalibrationError(
                f"model {model.name!r} has no statistics head (model.stats_head false): calibration re-estimates "
                "that head's standardisation, so there is nothing to calibrate"
            )
        norm, dense = head.get_layer("stats_norm"), head.get_layer("stats_emotion")
        mean = np.asarray(norm.mean, np.float32).reshape(-1)
        scale = np.sqrt(np.maximum(np.asarray(norm.variance, np.float32).reshape(-1), 1e-12))
        kernel, bias = (np.asarray(w, np.float32) for w in dense.get_weights())
        return cls(mean, scale, kernel, bias, 1.0 / len(parts))


@dataclass
class Profile:
    """A deployment's calibration: the statistics head's standardisation (`mean`, `scale`) for its recordings, the
    head it applies to, the calibrated head's share of the answer (`share`; None: the head's own share in the model),
    an optional default class subset, and what the estimate saw (`info`)."""

    name: str
    mean: np.ndarray
    scale: np.ndarray
    head: StatsHead
    classes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    share: float | None = None

    def apply(self, probs: np.ndarray, feats: np.ndarray | None = None, stats: np.ndarray | None = None) -> np.ndarray:
        """The model's window probabilities (rows, classes) with its statistics head re-standardised: the head's plain
        answer on the windows' clip statistics (`stats`, or from `feats`) taken out, the calibrated one put in (with
        weight `share`, the rest of the model the remainder)."""
        from ser.training.stats_head import clip_stats

        if stats is None:
            if feats is None:
                raise ValueError("Profile.apply: give the windows' features or their clip statistics")
            stats = clip_stats(feats)
        own, share = self.head.weight, self.head.weight if self.share is None else self.share
        calibrated = self.head.probs(stats, self.mean, self.scale)
        rest = (np.asarray(probs, np.float32) - own * self.head.probs(stats)) / (1 - own) if own < 1 else 0.0
        out = np.clip((1 - share) * rest + share * calibrated, 0.0, None)
        return out / np.maximum(out.sum(-1, keepdims=True), 1e-12)

    def save(self, model_dir: Path) -> Path:
        """Write `<model_dir>/profiles/<name>.npz` (atomically); returns the path."""
        path = Path(model_dir) / PROFILE_DIR / f"{self.name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {"name": self.name, "classes": self.classes, "weight": self.head.weight, "share": self.share}
        meta = json.dumps(fields | {"info": self.info})
        head = {f"head_{k}": getattr(self.head, k) for k in ("mean", "scale", "kernel", "bias")}
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, mean=self.mean, scale=self.scale, meta=np.array(meta), **head)
        return path

    @classmethod
    def load(cls, path: Path) -> Profile:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            arrays = {k: d[f"head_{k}"].astype(np.float32) for k in ("mean", "scale", "kernel", "bias")}
            head = StatsHead(**arrays, weight=float(meta["weight"]))
            classes, info, share = list(meta.get("classes") or []), meta.get("info", {}), meta.get("share")
            return cls(meta["name"], d["mean"], d["scale"], head, classes, info, share)


def check_name(name: str) -> str:
    """`name` when it can name a profile file (letters, digits, `_.-`, at most 64, not starting with `.`/`-`).

    Raises:
        CalibrationError: saying what is expected.
    """
    if not PROFILE_NAME.match(name or ""):
        raise CalibrationError(
            f"profile name {name!r}: expected 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def model_digest(model_dir: Path) -> str:
    """SHA-256 (first 16 hex) of the model file: a profile is valid for the model it was estimated with."""
    return hashlib.sha256((Path(model_dir) / "model.keras").read_bytes()).hexdigest()[:16]


def load_profiles(model_dir: Path) -> dict[str, Profile]:
    """Every profile under `<model_dir>/profiles/` estimated for this model; one for another model is left out with
    a warning (the model was retrained since: calibrate again)."""
    folder = Path(model_dir) / PROFILE_DIR
    if not folder.is_dir():
        return {}
    digest, out = model_digest(model_dir), {}
    for path in sorted(folder.glob("*.npz")):
        profile = Profile.load(path)
        if profile.info.get("model_digest") != digest:
            log.warning(
                "%s: estimated for another model (%s, this one %s); left out: run `ser calibrate` again",
                path,
                profile.info.get("model_digest"),
                digest,
            )
            continue
        out[profile.name] = profile
    return out


def pick_profile(profiles: dict[str, Profile], name: str | None) -> Profile | None:
    """The named profile (None for none).

    Raises:
        CalibrationError: no profile of that name, listing those there are.
    """
    if not name:
        return None
    if name not in profiles:
        there = ", ".join(sorted(profiles)) or "none (make one with `ser calibrate`)"
        raise CalibrationError(f"unknown profile {name!r}; this model's profiles: {there}")
    return profiles[name]


def class_subset(classes: list[str], wanted: str | list[str] | None) -> list[int] | None:
    """Indices into `classes` of a requested subset (comma-separated text or a list), in the model's order; None for
    none (every class).

    Raises:
        CalibrationError: an unknown class, or fewer than two.
    """
    if not wanted:
        return None
    names = [w.strip() for w in (wanted.split(",") if isinstance(wanted, str) else wanted) if w.strip()]
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise CalibrationError(f"unknown class(es) {unknown}; this model's classes: {', '.join(classes)}")
    if len(set(names)) < 2:
        raise CalibrationError(f"classes {names}: a subset needs at least two of {', '.join(classes)}")
    return [i for i, c in enumerate(classes) if c in names]


def restrict(probs: np.ndarray, keep: list[int] | None) -> np.ndarray:
    """Probabilities over the `keep` columns only, renormalised to sum to 1 (all columns when None)."""
    if keep is None:
        return probs
    sub = np.asarray(probs, np.float32)[..., keep]
    return sub / np.maximum(sub.sum(-1, keepdims=True), 1e-12)
