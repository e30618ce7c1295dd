"""The `train` stage: fit the CNN-LSTM on the featurized training split.

Seeded (`keras.utils.set_random_seed`); `train.schedule: cosine` (the default)
decays the learning rate along a cosine over all epochs and keeps the last
weights, averaged over the last `train.average_last` epochs; `plateau` stops
early on the validation loss with the best weights restored. Optional label smoothing, AdamW
weight decay and mixup (all in `train.*` params), a progress bar on a terminal and one log
line per epoch, history written as CSV for `dvc plots`. With `train.ensemble`
= n, n models are fitted with consecutive seeds and saved as one model that
averages their probabilities; with `model.stats_head`, a linear head on each clip's per-channel mean and
std (`ser.training.stats_head`) is fitted after them and averaged in; with `enrolment.head`, the
speaker-enrolment head (`ser.training.enrolment`) is fitted beside the model and saved as `enrolment.npz`;
`train.refit` trains the final model on the
training and validation splits together once validation has chosen the head's C. Runs on any Keras 3
backend (`KERAS_BACKEND`: tensorflow, the default and what serving uses, or jax or torch) and uses every
visible GPU (MirroredStrategy and mixed float16 on TensorFlow), the CPU otherwise. Writes `model.keras`
and `preprocess.json` (classes, feature parameters, normalisation statistics)
side by side. `fit` is also what the benchmark (`ser bench`) trains with.

    ser train --params params.yaml --features data/features --model-dir models \
        --history reports/train/history.csv
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd

from ser.config import Params
from ser.io import atomic_path, read_json, write_json
from ser.plots import plot_history
from ser.training.enrolment import FILE as ENROLMENT_FILE
from ser.training.enrolment import EnrolmentHead, fit_enrolment_head, split_speakers
from ser.training.fit_loop import EpochProgress, MixupBatches, balance_weights, learning_rate_schedule
from ser.training.model import average_models, build_model
from ser.training.placement import Placement, device_placement
from ser.training.stats_head import fit_stats_head

log = logging.getLogger(__name__)


def load_split(features_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays of one split written by featurize."""
    with np.load(features_dir / f"{split}.npz") as data:
        return data["x"], data["y"]


def split_corpus(features_dir: Path, split: str) -> np.ndarray | None:
    """Each row's corpus in one split written by featurize (None for features without one)."""
    with np.load(features_dir / f"{split}.npz") as data:
        return data["corpus"] if "corpus" in data.files else None


class Fitted(NamedTuple):
    """What `fit` returns."""

    model: keras.Model
    history: pd.DataFrame
    seconds: float
    head: dict  # the statistics head's report (chosen C, validation UAR); empty without one
    windows: int  # windows the CNN-LSTMs fitted on (training, plus validation with train.refit)


def fit(
    params: Params,
    stats: dict,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    refit: tuple[np.ndarray, np.ndarray] | None = None,
    corpus: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> Fitted:
    """Build, compile and fit the model with the `model` and `train` params.

    With `train.ensemble` = n > 1, n members are fitted with seeds `train.seed`, `train.seed` + 1, ...
    (the benchmark's `--seeds n`) and returned as one model averaging their probabilities. With
    `model.stats_head`, the statistics head is fitted next and the returned model averages it (weight 1/2)
    with the CNN-LSTM (or its ensemble, 1/2). With `train.refit`, the CNN-LSTMs train on the training and
    validation clips together (cosine: nothing is chosen on validation) and the head is fitted again on both
    once validation has chosen its C.

    Args:
        params: the whole params (model, train, augment.specaugment are read).
        stats: `stats.json` of the features: classes, shape, normalisation mean/variance.
        x_train, y_train, x_val, y_val: features (clips, frames, mels) and class indices.
        refit: with `train.refit`, the validation clips as training sees them (the benchmark adds their
            augmented copies); None uses (x_val, y_val).
        corpus: each training row's corpus, and each refit row's (for `train.balance`; None: one corpus).

    Returns:
        `Fitted`: the model with each member's best-epoch weights, the per-epoch history (a `member`
        column when there are several), the seconds fitting took (the head's included), the head's
        report (chosen C, validation UAR; empty without a head) and the windows fitted on.
    """
    members, frames, seconds = [], [], 0.0
    placement = device_placement()
    balance, (train_corpus, refit_corpus) = params.train.balance, corpus
    if params.train.refit:
        refit = (x_val, y_val) if refit is None else refit
        fit_on = (np.concatenate([x_train, refit[0]]), np.concatenate([y_train, refit[1]]))
        both = None if train_corpus is None or refit_corpus is None else np.concatenate([train_corpus, refit_corpus])
        weights = balance_weights(fit_on[1], both, balance)
        log.info("train.refit: fitting on %d training + %d validation windows", len(x_train), len(refit[0]))
    else:
        refit, fit_on = None, (x_train, y_train)
        weights = balance_weights(y_train, train_corpus, balance)
    for member in range(params.train.ensemble):
        seed = params.train.seed + member
        if params.train.ensemble > 1:
            log.info("ensemble member %d/%d (seed %d)", member + 1, params.train.ensemble, seed)
        name = "cnn_lstm" if params.train.ensemble == 1 else f"cnn_lstm_seed{seed}"
        model, frame, secs = fit_member(params, stats, fit_on, (x_val, y_val), seed, name, placement, weights)
        members.append(model)
        frames.append(frame.assign(member=member) if params.train.ensemble > 1 else frame)
        seconds += secs
    with placement.scope():
        model = average_models(members)
    head_report: dict = {}
    if params.model.stats_head:
        start = time.perf_counter()
        head_weights = balance_weights(y_train, train_corpus, balance)
        head, head_report = fit_stats_head(
            x_train, y_train, x_val, y_val, len(stats["classes"]), refit=refit, sample_weight=(head_weights, weights)
        )
        with placement.scope():
            model = average_models([model, head], name="cnn_lstm_stats")
        seconds += time.perf_counter() - start
    return Fitted(model, pd.concat(frames, ignore_index=True), seconds, head_report, len(fit_on[1]))


def fit_member(
    params: Params,
    stats: dict,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    seed: int,
    name: str,
    placement: Placement,
    weights: np.ndarray | None = None,
) -> tuple[keras.Model, pd.DataFrame, float]:
    """Fit one model with `seed` on `fit`'s one `placement` (`weights`: `train.balance`'s per training row);
    returns the model, its history and seconds."""
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val) = train, val
    n_classes = len(stats["classes"])
    t = params.train
    with placement.scope():
        model = build_model(
            tuple(stats["shape"]),
            n_classes,
            mean=np.array(stats["mean"]),
            variance=np.array(stats["variance"]),
            specaugment={**params.augment.specaugment.model_dump(), "seed": seed},
            name=name,
            layer_groups=len(params.features.whisper_layers) if params.model.layer_weighting else 1,
            **params.model.model_dump(exclude={"stats_head", "layer_weighting"}),
        )
    batch = t.batch_size * placement.replicas
    train_ds = MixupBatches(x_train, y_train, n_classes, batch, t.mixup, seed, weights, t.balance)
    rate, callbacks = learning_rate_schedule(t, len(train_ds))
    with placement.scope():
        optimizer = (
            keras.optimizers.AdamW(rate, weight_decay=t.weight_decay) if t.weight_decay else keras.optimizers.Adam(rate)
        )
        model.compile(
            optimizer=optimizer,
            metrics=["accuracy"],
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
        )
    callbacks.append(EpochProgress(t.epochs, len(train_ds)))
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=(x_val, keras.utils.to_categorical(y_val, n_classes)),
        epochs=t.epochs,
        callbacks=callbacks,
        shuffle=False,  # MixupBatches shuffles
        verbose=0,
    )
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return model, frame, seconds


def history_summary(frame: pd.DataFrame, schedule: str = "plateau") -> dict:
    """Epochs run and the epoch whose weights were kept: the lowest val_loss (`train.schedule` plateau) or
    the last (cosine); lists, one per member, for an ensemble's history."""
    groups = [g for _, g in frame.groupby("member")] if "member" in frame else [frame]
    runs = [len(g) for g in groups]
    best = [len(g) if schedule == "cosine" else int(g.loc[g["val_loss"].idxmin(), "epoch"]) for g in groups]
    if len(groups) == 1:
        return {"epochs_run": runs[0], "best_epoch": best[0]}
    return {"epochs_run": runs, "best_epoch": best}


def save_model(
    model: keras.Model, stats: dict, summary: dict, model_dir: Path, enrolment: EnrolmentHead | None = None
) -> None:
    """Write model.keras, preprocess.json (the features' stats plus the training summary) and the enrolment
    head (enrolment.npz, when there is one) into `model_dir` at once: a staging folder, then a rename."""
    with atomic_path(model_dir) as staging:
        staging.mkdir(parents=True)
        model.save(staging / "model.keras")
        write_json(staging / "preprocess.json", {**stats, "training": summary})
        if enrolment is not None:
            enrolment.save(staging / ENROLMENT_FILE)


def train(params: Params, features_dir: Path, model_dir: Path, history_path: Path) -> dict:
    """Train and save the model; return a summary (epochs run, best epoch, seconds)."""
    stats = read_json(features_dir / "stats.json")
    x_train, y_train = load_split(features_dir, "train")
    x_val, y_val = load_split(features_dir, "val")
    corpus = (split_corpus(features_dir, "train"), split_corpus(features_dir, "val"))
    model, frame, seconds, head, windows = fit(params, stats, x_train, y_train, x_val, y_val, corpus=corpus)
    enrolment: EnrolmentHead | None = None
    enrolment_report: dict = {}
    if params.enrolment.head:  # speaker enrolment (ser.training.enrolment): a second linear head, saved beside
        enrolment, enrolment_report = fit_enrolment_head(
            split_speakers(features_dir, "train", x_train, y_train),
            split_speakers(features_dir, "val", x_val, y_val),
            len(stats["classes"]),
            params.enrolment.clips,
            seed=params.train.seed,
            refit=params.train.refit,
        )
    with atomic_path(history_path) as tmp:
        frame.drop(columns=["learning_rate"], errors="ignore").to_csv(tmp, index=False)
    plot_history(history_path, history_path.with_name("curves.png"), params.train.schedule)
    summary = {
        **history_summary(frame, params.train.schedule),
        "train_seconds": round(seconds, 1),
        "train_clips": windows,
        "params": int(model.count_params()),
        "ensemble": params.train.ensemble,
        "refit": params.train.refit,
        "balance": params.train.balance,
        **({"stats_head": head} if head else {}),
        **({"enrolment_head": enrolment_report} if enrolment_report else {}),
    }
    save_model(model, stats, summary, model_dir, enrolment)
    log.info(
        "trained %s epochs (best %s) in %.0f s -> %s", summary["epochs_run"], summary["best_epoch"], seconds, model_dir
    )
    return summary
