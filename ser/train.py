"""The `train` stage: fit the CNN-LSTM on the featurized training split.

Seeded (`keras.utils.set_random_seed`), early stopping on the validation loss
with the best weights restored, one progress line per epoch, history written as
CSV for `dvc plots`. Uses every visible GPU (MirroredStrategy + mixed float16)
and the CPU otherwise. Writes `model.keras` and `preprocess.json` (classes,
feature parameters, normalisation statistics) side by side.

    ser train --params params.yaml --features data/features --model-dir models \
        --history reports/train/history.csv
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from ser.config import Params
from ser.curves import plot_history
from ser.io import atomic_path, read_json, write_json
from ser.model import build_model

log = logging.getLogger(__name__)


def load_split(features_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays of one split written by featurize."""
    with np.load(features_dir / f"{split}.npz") as data:
        return data["x"], data["y"]


def device_strategy() -> tf.distribute.Strategy:
    """MirroredStrategy with mixed precision over all GPUs, or the default (CPU) strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        log.info("no GPU visible: training on the CPU")
        return tf.distribute.get_strategy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    log.info("training on %d GPU(s) with mixed float16", len(gpus))
    return tf.distribute.MirroredStrategy()


def train(params: Params, features_dir: Path, model_dir: Path, history_path: Path) -> dict:
    """Train and save the model; return a summary (epochs run, best epoch, seconds)."""
    keras.utils.set_random_seed(params.train.seed)
    stats = read_json(features_dir / "stats.json")
    x_train, y_train = load_split(features_dir, "train")
    x_val, y_val = load_split(features_dir, "val")
    strategy = device_strategy()
    with strategy.scope():
        model = build_model(
            tuple(stats["shape"]), len(stats["classes"]), mean=np.array(stats["mean"]),
            variance=np.array(stats["variance"]),
            specaugment={**params.augment.specaugment.model_dump(), "seed": params.train.seed},
            **params.model.model_dump(),
        )  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(params.train.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    callbacks = [
        keras.callbacks.EarlyStopping("val_loss", patience=params.train.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, params.train.patience // 2)),
    ]
    batch = params.train.batch_size * strategy.num_replicas_in_sync
    start = time.perf_counter()
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=params.train.epochs,
                        batch_size=batch, shuffle=True, callbacks=callbacks, verbose=2)  # fmt: skip
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    with atomic_path(history_path) as tmp:
        frame.drop(columns=["learning_rate"], errors="ignore").to_csv(tmp, index=False)
    plot_history(history_path, history_path.with_name("curves.png"))
    best = int(frame["val_loss"].idxmin()) + 1
    summary = {"epochs_run": len(frame), "best_epoch": best, "train_seconds": round(seconds, 1),
               "train_clips": int(len(x_train)), "params": int(model.count_params())}  # fmt: skip
    with atomic_path(model_dir) as staging:
        staging.mkdir(parents=True)
        model.save(staging / "model.keras")
        write_json(staging / "preprocess.json", {**stats, "training": summary})
    log.info("trained %d epochs (best %d) in %.0f s -> %s", len(frame), best, seconds, model_dir)
    return summary
