"""What `ser.training.train.fit` plugs into Keras's `fit`: the batches, the learning-rate schedule and the callbacks.

`MixupBatches` feeds shuffled one-hot batches (mixup when `train.mixup` > 0; balanced by corpus and class with
`train.balance`, `balance_weights`) as plain NumPy, so every Keras backend trains on the same batches;
`learning_rate_schedule` turns `train.schedule` into a rate and its callbacks (cosine decay with `AverageWeights`,
stochastic weight averaging over the last epochs, or the plateau schedule's early stopping); `EpochProgress` draws
a progress bar on a terminal and logs each epoch.

    rate, callbacks = learning_rate_schedule(params.train, steps=len(batches))
"""

from __future__ import annotations

import logging

import keras
import numpy as np
from tqdm import tqdm

from ser.config import TrainParams

log = logging.getLogger(__name__)


class EpochProgress(keras.callbacks.Callback):
    """A tqdm bar over batches on a terminal, and one log line per epoch everywhere."""

    def __init__(self, epochs: int, steps: int) -> None:
        super().__init__()
        self.epochs, self.steps = epochs, steps
        self.bar: tqdm | None = None  # set by on_epoch_begin

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(
            total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="batch", disable=None, leave=False
        )

    def on_train_batch_end(self, batch, logs=None):
        assert self.bar is not None  # Keras calls on_epoch_begin first
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{(logs or {}).get('loss', float('nan')):.3f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        assert self.bar is not None  # Keras calls on_epoch_begin first
        self.bar.close()
        logs = logs or {}
        log.info(
            "epoch %d/%d  loss %.4f  accuracy %.3f  val_loss %.4f  val_accuracy %.3f",
            epoch + 1,
            self.epochs,
            logs.get("loss", np.nan),
            logs.get("accuracy", np.nan),
            logs.get("val_loss", np.nan),
            logs.get("val_accuracy", np.nan),
        )


class AverageWeights(keras.callbacks.Callback):
    """Stochastic weight averaging: at the end, the model gets the mean of its weights after each of the
    last `last` epochs (float weights, BatchNorm statistics included; others keep their final values)."""

    def __init__(self, epochs: int, last: int) -> None:
        super().__init__()
        self.first, self.count = epochs - last, 0
        self.total: list[np.ndarray] | None = None  # running sum of the averaged epochs' weights

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.first:
            return
        weights = [np.asarray(w, np.float64) for w in self.model.get_weights()]
        self.total = weights if self.total is None else [a + b for a, b in zip(self.total, weights, strict=True)]
        self.count += 1

    def on_train_end(self, logs=None):
        if not self.count:
            return
        assert self.total is not None  # count > 0: on_epoch_end summed at least one epoch
        final = self.model.get_weights()
        self.model.set_weights(
            [
                (a / self.count).astype(w.dtype) if np.issubdtype(w.dtype, np.floating) else w
                for a, w in zip(self.total, final, strict=True)
            ]
        )


def learning_rate_schedule(
    t: TrainParams, steps: int
) -> tuple[float | keras.optimizers.schedules.LearningRateSchedule, list[keras.callbacks.Callback]]:
    """The learning rate (a value or a schedule) and the callbacks of `train.schedule`, `steps` batches an epoch."""
    if t.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=t.epochs * steps)
        return rate, [AverageWeights(t.epochs, min(t.average_last, t.epochs))] if t.average_last else []
    return t.learning_rate, [
        keras.callbacks.EarlyStopping("val_loss", patience=t.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, t.patience // 2)),
    ]


def balance_weights(y: np.ndarray, corpus: np.ndarray | None, mode: str) -> np.ndarray | None:
    """Per-row weights (mean 1) for `train.balance`: every corpus the same total weight and, within a corpus, every
    class it has the same; None for `none`. One corpus: plain class balance."""
    if mode == "none":
        return None
    corpus = np.zeros(len(y), int) if corpus is None else np.asarray(corpus)
    cells = np.char.add(np.asarray(corpus).astype(str), np.char.add(":", np.asarray(y).astype(str)))
    names, cell, counts = np.unique(cells, return_inverse=True, return_counts=True)
    per_corpus = {c: sum(1 for n in names if n.rsplit(":", 1)[0] == str(c)) for c in np.unique(corpus)}
    classes_in = np.array([per_corpus[c] for c in corpus])
    weights = 1.0 / (len(per_corpus) * classes_in * counts[cell])
    return (weights / weights.mean()).astype(np.float32)


class MixupBatches(keras.utils.PyDataset):
    """Shuffled one-hot batches, reshuffled every epoch, mixed (mixup, Beta(a, a) per example) when `mixup` > 0.

    `weights` (`balance_weights`) with `balance` "weights" go with each batch as Keras sample weights (mixed as the
    labels are); with "sampler", each epoch draws its rows with probability proportional to them (with
    replacement), so the batches themselves are balanced. Plain NumPy, so the same batches feed every Keras backend.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        batch: int,
        mixup: float,
        seed: int,
        weights: np.ndarray | None = None,
        balance: str = "weights",
    ) -> None:
        super().__init__()
        self.x, self.y = x, np.eye(n_classes, dtype=np.float32)[y]
        self.batch, self.mixup = batch, mixup
        self.weights = None if weights is None else np.asarray(weights, np.float32)
        self.sampler = self.weights is not None and balance == "sampler"
        self.rng = np.random.default_rng(seed)
        self.order = self._order()

    def _order(self) -> np.ndarray:
        if self.sampler:
            assert self.weights is not None
            return self.rng.choice(len(self.x), size=len(self.x), p=self.weights / self.weights.sum())
        return self.rng.permutation(len(self.x))

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.batch))

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        rows = self.order[i * self.batch : (i + 1) * self.batch]
        xb, yb = self.x[rows], self.y[rows]
        wb = None if self.weights is None or self.sampler else self.weights[rows]
        if self.mixup > 0:
            lam = self.rng.beta(self.mixup, self.mixup, len(rows)).astype(np.float32)
            perm = self.rng.permutation(len(rows))
            xb = lam[:, None, None] * xb + (1 - lam[:, None, None]) * xb[perm]
            yb = lam[:, None] * yb + (1 - lam[:, None]) * yb[perm]
            wb = None if wb is None else lam * wb + (1 - lam) * wb[perm]
        return (xb, yb) if wb is None else (xb, yb, wb)

    def on_epoch_end(self) -> None:
        self.order = self._order()
