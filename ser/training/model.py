"""The CNN-LSTM: Conv1D (or Conv2D) blocks over time, two LSTMs, a dense head (Keras 3 functional API).

Input is a (frames, n_mels) log-mel; the convolutions slide along **time** with
the mel bins as channels (the article's code convolved along the mel axis).
Normalisation statistics from the training split are baked in as the first
layer, and SpecAugment-style masking runs in training only. `average_models`
joins models trained with different seeds into one that averages their
probabilities (`train.ensemble`), and the CNN-LSTM with the linear head on
`TimeStats` (`model.stats_head`, fitted in `ser.training.stats_head`).

    model = build_model((219, 64), 8, mean=mean, variance=var, **params.model.model_dump())
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="ser")
class SpecAugment(layers.Layer):
    """Random time and frequency masks on (batch, frames, mels), active only when training.

    Args:
        rate: probability that an example gets masked at all.
        freq_masks, freq_width: number and maximum width (bins) of frequency masks.
        time_masks, time_width: number and maximum width (frames) of time masks.
    """

    def __init__(
        self,
        rate: float = 0.5,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 20,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _masks(self, batch, size: int, count: int, width: int, axis: int):
        keep = ops.ones((batch, size), dtype="bool")
        pos = ops.arange(size)[None, :]
        for _ in range(count):
            w = ops.cast(keras.random.uniform((batch, 1), 0, width + 1, seed=self.seed_generator), "int32")
            start = ops.cast(
                keras.random.uniform((batch, 1), 0, 1, seed=self.seed_generator) * ops.cast(size - w + 1, "float32"),
                "int32",
            )
            keep = ops.logical_and(keep, ops.logical_not(ops.logical_and(pos >= start, pos < start + w)))
        return ops.expand_dims(keep, axis)

    def call(self, inputs, training=None):
        if not training or self.rate <= 0:
            return inputs
        batch, frames, mels = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]
        keep = ops.logical_and(
            self._masks(batch, frames, self.time_masks, self.time_width, 2),
            self._masks(batch, mels, self.freq_masks, self.freq_width, 1),
        )
        apply = keras.random.uniform((batch, 1, 1), seed=self.seed_generator) < self.rate
        keep = ops.logical_or(keep, ops.logical_not(apply))
        return ops.where(keep, inputs, ops.zeros_like(inputs))

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "freq_masks": self.freq_masks,
            "freq_width": self.freq_width,
            "time_masks": self.time_masks,
            "time_width": self.time_width,
        }


@keras.saving.register_keras_serializable(package="ser")
class UtteranceNorm(layers.Layer):
    """Subtract each clip's own mean per mel bin over time (cepstral-mean-style normalisation).

    Removes the clip's average spectral envelope (voice, microphone, level), so the
    model sees how the spectrum moves rather than whose voice it is.
    """

    def call(self, inputs):
        return inputs - ops.mean(inputs, axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="ser")
class AttentionPool(layers.Layer):
    """Weighted mean over time, the weights a learned softmax over frames (attention pooling)."""

    def build(self, input_shape):
        self.score = layers.Dense(1, name="score")
        self.score.build(input_shape)

    def call(self, inputs):
        weights = ops.softmax(self.score(inputs), axis=1)
        return ops.sum(weights * inputs, axis=1)


@keras.saving.register_keras_serializable(package="ser")
class TimeStats(layers.Layer):
    """Each channel's mean and standard deviation over time: (batch, frames, channels) -> (batch, 2 * channels).

    In float32 whatever the global policy, so a float16 GPU run pools the same numbers as NumPy.
    """

    def __init__(self, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        return ops.concatenate([ops.mean(inputs, axis=1), ops.std(inputs, axis=1)], axis=-1)


@keras.saving.register_keras_serializable(package="ser")
class LayerMix(layers.Layer):
    """(batch, frames, groups * width) -> (batch, frames, width): the groups (encoder layers side by side) mixed
    by softmax weights learned with the model (SUPERB's weighted sum; zeros at start: the plain mean).

    Args:
        groups: how many equal parts the channels hold.
    """

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups

    def build(self, input_shape):
        if input_shape[-1] % self.groups:
            raise ValueError(f"LayerMix: {input_shape[-1]} channels do not split into {self.groups} equal layers")
        self.logits = self.add_weight(shape=(self.groups,), initializer="zeros", name="logits")

    def call(self, inputs):
        width = inputs.shape[-1] // self.groups
        parts = ops.reshape(inputs, (-1, ops.shape(inputs)[1], self.groups, width))
        return ops.einsum("g,bfgw->bfw", ops.softmax(ops.cast(self.logits, parts.dtype)), parts)

    def weights_by_layer(self) -> np.ndarray:
        """The softmax weights, one per group."""
        return np.asarray(ops.convert_to_numpy(ops.softmax(self.logits)))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def build_model(
    input_shape: tuple[int, int],
    num_classes: int,
    *,
    filters: Sequence[int] = (64, 128, 128),
    kernel_size: int = 5,
    pool_size: int = 2,
    lstm_units: Sequence[int] = (128, 64),
    dense_units: int = 64,
    dropout: float = 0.3,
    pooling: str = "last",
    bidirectional: bool = False,
    utterance_norm: bool = False,
    frontend: str = "conv1d",
    mean: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    specaugment: dict | None = None,
    layer_groups: int = 1,
    name: str = "cnn_lstm",
) -> keras.Model:
    """Build the CNN-LSTM classifier.

    Args:
        input_shape: (frames, n_mels).
        num_classes: size of the softmax.
        filters, kernel_size, pool_size: the convolution + BatchNorm + ELU + MaxPool blocks.
        frontend: `conv1d` slides along time with the mel bins as channels; `conv2d` slides a
            kernel_size x kernel_size window over time and mel (pooling both), then flattens
            each frame's mel x channel map for the LSTMs: more compute (a GPU's), and it sees
            local spectral shapes such as formant and pitch movements wherever they sit in frequency.
        lstm_units: one LSTM per entry; all but the last return sequences.
        dense_units, dropout: the dense head.
        pooling: how the last LSTM's sequence becomes one vector: its `last` state,
            the `mean` over time, or `attention` pooling.
        bidirectional: run each LSTM both ways (outputs concatenated).
        utterance_norm: subtract each clip's own per-mel mean (after the training-split normalisation).
        mean, variance: per-mel normalisation from the training split (identity when None).
        specaugment: SpecAugment kwargs (rate, masks, widths); None disables masking.
        layer_groups: > 1 (`model.layer_weighting`): the channels are that many encoder layers side by side,
            mixed into one by learned softmax weights (`LayerMix`) right after the normalisation.
        name: the model's name (members of an ensemble need distinct names).

    Returns:
        An uncompiled `keras.Model` whose output is float32 class probabilities.
    """
    n_mels = input_shape[-1]
    mean = np.zeros(n_mels, np.float32) if mean is None else np.asarray(mean, np.float32)
    variance = np.ones(n_mels, np.float32) if variance is None else np.asarray(variance, np.float32)
    inputs = keras.Input(shape=tuple(input_shape), name="logmel")
    x = layers.Normalization(axis=-1, mean=mean, variance=variance, name="train_norm")(inputs)
    if layer_groups > 1:  # after the normalisation, so every layer enters the mix on one scale
        x = LayerMix(layer_groups, name="layer_mix")(x)
    if utterance_norm:
        x = UtteranceNorm(name="utterance_norm")(x)
    if specaugment:
        x = SpecAugment(**specaugment, name="specaugment")(x)
    if frontend not in ("conv1d", "conv2d"):
        raise ValueError(f"model.frontend: expected conv1d or conv2d, got {frontend!r}")
    conv, pool = (layers.Conv1D, layers.MaxPooling1D) if frontend == "conv1d" else (layers.Conv2D, layers.MaxPooling2D)
    if frontend == "conv2d":
        x = layers.Reshape((*x.shape[1:], 1), name="as_image")(x)
    for i, n in enumerate(filters):
        x = conv(n, kernel_size, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ELU(name=f"elu{i}")(x)
        x = pool(pool_size, padding="same", name=f"pool{i}")(x)
    if frontend == "conv2d":  # (frames', mels', channels) -> (frames', mels' * channels)
        x = layers.Reshape((x.shape[1], x.shape[2] * x.shape[3]), name="frames")(x)
    for i, units in enumerate(lstm_units):
        sequences = i < len(lstm_units) - 1 or pooling != "last"
        lstm = layers.LSTM(units, return_sequences=sequences, name=f"lstm{i}")
        x = layers.Bidirectional(lstm, name=f"bilstm{i}")(x) if bidirectional else lstm(x)
    if pooling == "mean":
        x = layers.GlobalAveragePooling1D(name="mean_pool")(x)
    elif pooling == "attention":
        x = AttentionPool(name="attention_pool")(x)
    elif pooling != "last":
        raise ValueError(f"model.pooling: expected last, mean or attention, got {pooling!r}")
    x = layers.Dense(dense_units, activation="elu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="emotion")(x)
    return keras.Model(inputs, outputs, name=name)


def average_models(members: list[keras.Model], name: str = "ensemble") -> keras.Model:
    """One model whose output is the mean of the members' class probabilities (a seed ensemble).

    A single member is returned as it is. The ensemble is an ordinary functional model, so it
    saves as one `.keras` file and serves, evaluates and packages like a single model.
    """
    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=members[0].input_shape[1:], name="logmel")
    outputs = layers.Average(name="emotion", dtype="float32")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=name)


def load_model(path: str | Path) -> keras.Model:
    """Load a saved `.keras` model in safe mode (no arbitrary code), with `SpecAugment` registered."""
    return keras.models.load_model(path, safe_mode=True)
