"""The statistics head (`model.stats_head`): a linear classifier on each clip's per-channel mean and std.

Whisper's middle layers are good enough that a logistic regression on their mean and standard deviation
over the window nearly matches the CNN-LSTM on held-out actors, and makes different mistakes: averaging the
two beats either alone on the benchmark's 6-fold mean (runs S, T of the README's experiment log). Fitted
once the CNN-LSTM has trained, on the same training split (augmented copies included): inputs standardised
on the training split, C chosen from `C_GRID` by the validation split's UAR (macro recall), never the test
split (with `train.refit`, fitted again with that C on the training and validation splits together). It is
then written into Keras layers (`TimeStats`, a fixed `Normalization`, a softmax `Dense`) and
averaged with the CNN-LSTM, so the saved `model.keras` is still one model with one input that evaluates,
serves and packages as before. `bench/whisper_probe.py` uses the same fit, and through it measures
`fit_linear`'s `nap_grid` (speaker directions projected out, run AJ of the experiment log): validation
declined it, so the pipeline's head does not use it.

    head, report = fit_stats_head(x_train, y_train, x_val, y_val, n_classes=8)
    model = average_models([cnn_lstm, head], name="cnn_lstm_stats")
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # inverse L2 strengths tried on the validation split
ABSENT_LOGIT = -30.0  # a class missing from the training split gets (near) zero probability


def clip_stats(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(clips, frames, channels) -> (clips, 2 * channels): each channel's mean, then its std, over frames.

    Chunked, so the std's temporary stays small next to a multi-gigabyte feature array.
    """
    out = np.empty((len(x), 2 * x.shape[-1]), np.float32)
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start : start + chunk], np.float32)
        out[start : start + len(part)] = np.concatenate([part.mean(1), part.std(1)], -1)
    return out


def speaker_directions(z: np.ndarray, speakers: np.ndarray, dims: int) -> np.ndarray:
    """(features, dims) orthonormal: the leading principal directions of the speakers' mean rows.

    Nuisance attribute projection (NAP, from speaker verification): where the training speakers' means
    differ most is voice, not emotion (RAVDESS gives every actor every emotion), so a head kept off those
    directions leans less on who is speaking. At most one fewer than the number of speakers.
    """
    ids = np.unique(speakers)
    if dims > len(ids) - 1:
        raise ValueError(f"speaker directions: {dims} asked for, from {len(ids)} speakers (at most {len(ids) - 1})")
    means = np.stack([z[speakers == s].mean(0) for s in ids])
    _, _, vt = np.linalg.svd(means - means.mean(0), full_matrices=False)
    return vt[:dims].T


def _fit_projected(z: np.ndarray, y: np.ndarray, c: float, basis: np.ndarray | None, weight: np.ndarray | None = None):
    """A logistic regression fitted on `z` (rows weighted by `weight`) with `basis` projected out, its weights then
    projected too.

    w . (z - z B B') = (w - w B B') . z, so the returned classifier takes unprojected rows and serves as is.
    """
    from sklearn.linear_model import LogisticRegression

    if basis is None or not basis.shape[1]:
        return LogisticRegression(C=c, max_iter=3000).fit(z, y, sample_weight=weight)
    classifier = LogisticRegression(C=c, max_iter=3000).fit(z - (z @ basis) @ basis.T, y, sample_weight=weight)
    classifier.coef_ = classifier.coef_ - (classifier.coef_ @ basis) @ basis.T
    return classifier


def fit_linear(
    stats_train: np.ndarray,
    y_train: np.ndarray,
    stats_val: np.ndarray,
    y_val: np.ndarray,
    grid: tuple[float, ...] = C_GRID,
    refit: tuple[np.ndarray, ...] | None = None,
    speakers: np.ndarray | None = None,
    nap_grid: tuple[int, ...] = (0,),
    sample_weight: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
):
    """Standardise on the training rows and fit a logistic regression per C; keep the best validation UAR.

    Args:
        refit: (stats, labels[, speakers]) of more rows (`train.refit`: the validation clips): once C is
            chosen, the scaler and the regression are fitted again with that C on the training rows plus these.
        speakers: the training rows' speaker ids, needed when `nap_grid` holds more than 0.
        nap_grid: numbers of speaker directions (`speaker_directions`) to project out, chosen with C on
            validation UAR; 0 is the plain fit, and a tie goes to the fewer directions.
        sample_weight: per-row weights of the training rows, and of the training plus `refit` rows (`train.balance`);
            None fits unweighted.

    Returns:
        (scaler, classifier, report) where report holds the chosen `C`, `nap_dims`, its `val_uar` and every
        setting's UAR.
    """
    from sklearn.metrics import recall_score
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise ValueError(
            f"model.stats_head: the training split has {len(np.unique(y_train))} class(es); "
            "a linear head needs at least 2"
        )
    if any(nap_grid) and speakers is None:
        raise ValueError("nap_grid: projecting speaker directions out needs the training rows' speakers")
    scaler = StandardScaler().fit(stats_train)
    train_z, val_z = scaler.transform(stats_train), scaler.transform(stats_val)
    settings = [(dims, c) for dims in sorted(nap_grid) for c in grid]
    bases = {d: speaker_directions(train_z, speakers, d) if d else None for d in nap_grid}  # type: ignore[arg-type]
    fits = [_fit_projected(train_z, y_train, c, bases[dims], sample_weight[0]) for dims, c in settings]
    uars = [float(recall_score(y_val, m.predict(val_z), average="macro")) for m in fits]
    best = int(np.argmax(uars))
    dims, c = settings[best]
    report = {
        "C": c,
        "nap_dims": dims,
        "val_uar": uars[best],
        "val_uar_by_C": {f"{c:g}": round(u, 4) for (d, c), u in zip(settings, uars, strict=True) if d == dims},
    }
    if len(nap_grid) > 1:
        report["val_uar_by_nap"] = {
            str(d): round(max(u for (d2, _), u in zip(settings, uars, strict=True) if d2 == d), 4)
            for d in sorted(nap_grid)
        }
    if refit is None:
        return scaler, fits[best], report
    stats_all, y_all = np.concatenate([stats_train, refit[0]]), np.concatenate([y_train, refit[1]])
    scaler = StandardScaler().fit(stats_all)
    z_all, basis = scaler.transform(stats_all), None
    if dims:
        if len(refit) < 3:
            raise ValueError("nap_grid: refitting with speaker directions needs the added rows' speakers")
        basis = speaker_directions(z_all, np.concatenate([speakers, refit[2]]), dims)
    classifier = _fit_projected(z_all, y_all, c, basis, sample_weight[1])
    return scaler, classifier, {**report, "refit_rows": int(len(y_all))}


def class_weights(classifier, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted logistic regression as a (dims, n_classes) kernel and a bias, classes in index order.

    Classes the classifier never saw get weight 0 and bias `ABSENT_LOGIT`.
    """
    coef = np.atleast_2d(classifier.coef_).astype(np.float32)
    intercept = np.atleast_1d(classifier.intercept_).astype(np.float32)
    seen = np.asarray(classifier.classes_, int)
    if len(seen) == 2:  # sklearn keeps one row for two classes: logits (-z/2, z/2) give the same softmax
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros((coef.shape[1], n_classes), np.float32)
    bias = np.full(n_classes, ABSENT_LOGIT, np.float32)
    kernel[:, seen], bias[seen] = coef.T, intercept
    return kernel, bias


def linear_head(
    input_shape: tuple[int, int], scaler, classifier, n_classes: int, name: str = "stats_head"
) -> keras.Model:
    """A Keras model computing `classifier.predict_proba(scaler.transform(clip_stats(x)))`, classes in index order."""
    import keras  # here, not at the top: `clip_stats` and `fit_linear` serve NumPy-only callers (enrolment)
    from keras import layers

    from ser.training.model import TimeStats

    kernel, bias = class_weights(classifier, n_classes)
    inputs = keras.Input(shape=tuple(input_shape), name="logmel")
    x = TimeStats(name="time_stats")(inputs)
    x = layers.Normalization(mean=scaler.mean_, variance=np.square(scaler.scale_), dtype="float32", name="stats_norm")(
        x
    )
    dense = layers.Dense(n_classes, activation="softmax", dtype="float32", name="stats_emotion")
    outputs = dense(x)
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs, name=name)


def fit_stats_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    refit: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weight: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> tuple[keras.Model, dict]:
    """Fit the head on (clips, frames, channels) features; returns the Keras head and the fit's report.

    `refit`: (features, labels) added to the training rows once C is chosen; `sample_weight`: the training rows'
    and the training plus refit rows' weights (see `fit_linear`).
    """
    more = None if refit is None else (clip_stats(refit[0]), refit[1])
    scaler, classifier, report = fit_linear(
        clip_stats(x_train), y_train, clip_stats(x_val), y_val, refit=more, sample_weight=sample_weight
    )
    log.info("stats head: C %g, validation UAR %.3f", report["C"], report["val_uar"])
    return linear_head(x_train.shape[1:], scaler, classifier, n_classes), report
