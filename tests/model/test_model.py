"""The CNN-LSTM: output shape and probabilities, convolution over time, safe-mode
save/load, and SpecAugment acting in training only."""

from __future__ import annotations

import numpy as np
import pytest

from ser.model import SpecAugment, build_model, load_model

SMALL = dict(filters=[8, 8, 8], lstm_units=[8, 8], dense_units=8)


def test_output_is_a_probability_per_class():
    model = build_model((110, 32), 7, **SMALL)
    probs = np.asarray(model(np.random.default_rng(0).normal(size=(5, 110, 32)).astype("float32")))
    assert probs.shape == (5, 7)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5) and (probs >= 0).all()


def test_convolutions_run_along_time():
    model = build_model((110, 32), 8, **SMALL)
    conv = model.get_layer("conv0")
    # Conv1D kernels are (width, in_channels, filters): mel bins are the channels, time is the axis.
    assert conv.kernel.shape == (5, 32, 8)
    assert model.get_layer("pool2").output.shape[1] == 14  # 110 frames pooled 3x by 2


def test_normalisation_uses_training_statistics():
    mean, var = np.full(16, 3.0, np.float32), np.full(16, 4.0, np.float32)
    model = build_model((20, 16), 2, mean=mean, variance=var, **SMALL)
    norm = model.get_layer("train_norm")
    out = np.asarray(norm(np.full((1, 20, 16), 5.0, np.float32)))
    assert np.allclose(out, 1.0, atol=1e-3)


def test_safe_mode_round_trip(tmp_path):
    model = build_model((40, 16), 4, specaugment={"rate": 1.0, "seed": 0}, **SMALL)
    x = np.random.default_rng(1).normal(size=(3, 40, 16)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert np.allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_specaugment_masks_only_in_training():
    layer = SpecAugment(rate=1.0, freq_masks=2, freq_width=4, time_masks=2, time_width=10, seed=0)
    x = np.ones((4, 50, 16), np.float32)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)
    masked = np.asarray(layer(x, training=True))
    assert 0 < (masked == 0).mean() < 0.6
    assert np.array_equal(np.asarray(SpecAugment(rate=0.0)(x, training=True)), x)


@pytest.mark.parametrize("n_classes", [2, 8])
def test_a_few_steps_reduce_the_loss(n_classes):
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 64)
    x = rng.normal(size=(64, 30, 8)).astype("float32") + y[:, None, None].astype("float32")
    model = build_model((30, 8), n_classes, **SMALL)
    model.compile("adam", "sparse_categorical_crossentropy")
    hist = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < hist[0]


@pytest.mark.parametrize(("pooling", "bidirectional"), [("mean", False), ("attention", True), ("last", True)])
def test_pooling_and_bidirectional_variants_round_trip(tmp_path, pooling, bidirectional):
    model = build_model((40, 16), 4, pooling=pooling, bidirectional=bidirectional, utterance_norm=True, **SMALL)
    x = np.random.default_rng(2).normal(size=(3, 40, 16)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")  # custom layers load in safe mode
    assert np.allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    assert np.allclose(np.asarray(model(x)).sum(axis=1), 1, atol=1e-5)


def test_utterance_norm_removes_each_clips_own_level():
    """A clip and the same clip 20 dB louder in every bin give the same prediction."""
    model = build_model((40, 16), 4, utterance_norm=True, **SMALL)
    x = np.random.default_rng(3).normal(size=(2, 40, 16)).astype("float32")
    assert np.allclose(np.asarray(model(x)), np.asarray(model(x + 20.0)), atol=1e-5)


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="model.pooling"):
        build_model((40, 16), 4, pooling="max", **SMALL)


def test_mixup_batches_mix_inputs_and_labels_alike():
    from ser.train import training_batches

    x = np.stack([np.full((5, 3), i, np.float32) for i in range(8)])
    y = np.arange(8) % 4
    xb, yb = next(iter(training_batches(x, y, 4, batch=8, mixup=0.4, seed=0)))
    xb, yb = np.asarray(xb), np.asarray(yb)
    assert np.allclose(yb.sum(axis=1), 1, atol=1e-6)  # still a distribution
    assert not np.allclose(xb, np.round(xb))  # inputs are blends, not originals
    plain_x, plain_y = next(iter(training_batches(x, y, 4, batch=8, mixup=0.0, seed=0)))
    assert set(np.asarray(plain_y).max(axis=1)) == {1.0}
