"""The CNN-LSTM: output shape and probabilities, convolution over time, safe-mode
save/load, and SpecAugment acting in training only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ser.training.model import LayerMix, SpecAugment, build_model, load_model

ROOT = Path(__file__).resolve().parents[3]
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


def test_conv2d_front_end_slides_over_time_and_mel_and_round_trips(tmp_path):
    model = build_model((110, 32), 8, frontend="conv2d", kernel_size=3, **SMALL)
    # Conv2D kernels are (time, mel, in_channels, filters): one input channel, the log-mel image.
    assert model.get_layer("conv0").kernel.shape == (3, 3, 1, 8)
    assert model.get_layer("pool2").output.shape[1:] == (14, 4, 8)  # both axes pooled 3x by 2
    assert model.get_layer("frames").output.shape[1:] == (14, 32)  # 4 mel cells x 8 channels per frame
    x = np.random.default_rng(3).normal(size=(2, 110, 32)).astype("float32")
    model.save(tmp_path / "m.keras")
    assert np.allclose(load_model(tmp_path / "m.keras").predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_layer_mix_is_a_softmax_weighted_sum_of_the_layers_and_round_trips(tmp_path):
    x = np.random.default_rng(4).normal(size=(2, 10, 3 * 4)).astype("float32")  # 3 layers of 4 side by side
    mix = LayerMix(3)
    parts = x.reshape(2, 10, 3, 4)
    assert np.allclose(np.asarray(mix(x)), parts.mean(2), atol=1e-6)  # zeros at start: the plain mean
    mix.logits.assign(np.array([0.0, np.log(3.0), 0.0], np.float32))
    assert np.allclose(mix.weights_by_layer(), [0.2, 0.6, 0.2], atol=1e-6)
    assert np.allclose(
        np.asarray(mix(x)), 0.2 * parts[:, :, 0] + 0.6 * parts[:, :, 1] + 0.2 * parts[:, :, 2], atol=1e-5
    )
    model = build_model((10, 12), 4, layer_groups=3, **SMALL)
    assert model.get_layer("conv0").kernel.shape == (5, 4, 8)  # the CNN sees one layer's width
    model.get_layer("layer_mix").logits.assign(np.array([1.0, -1.0, 0.5], np.float32))
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert np.allclose(
        loaded.get_layer("layer_mix").weights_by_layer(), model.get_layer("layer_mix").weights_by_layer()
    )
    with pytest.raises(ValueError, match="13 channels do not split into 3 equal layers"):
        build_model((10, 13), 4, layer_groups=3, **SMALL)


def test_layer_weighting_needs_whisper_features():
    from ser.config import ParamsError, parse_params

    assert parse_params(
        {"features": {"kind": "whisper_base"}, "model": {"layer_weighting": True}}
    ).model.layer_weighting
    with pytest.raises(ParamsError, match="model.layer_weighting mixes encoder layers: it needs features.kind"):
        parse_params({"features": {"kind": "logmel"}, "model": {"layer_weighting": True}})


def test_unknown_frontend_is_refused():
    with pytest.raises(ValueError, match="model.frontend"):
        build_model((40, 16), 4, frontend="transformer", **SMALL)


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
    from ser.training.fit_loop import MixupBatches

    x = np.stack([np.full((5, 3), i, np.float32) for i in range(8)])
    y = np.arange(8) % 4
    xb, yb = MixupBatches(x, y, 4, batch=8, mixup=0.4, seed=0)[0]
    xb, yb = np.asarray(xb), np.asarray(yb)
    assert np.allclose(yb.sum(axis=1), 1, atol=1e-6)  # still a distribution
    assert not np.allclose(xb, np.round(xb))  # inputs are blends, not originals
    plain = MixupBatches(x, y, 4, batch=3, mixup=0.0, seed=0)
    plain_x, plain_y = plain[0]
    assert set(np.asarray(plain_y).max(axis=1)) == {1.0}
    assert len(plain) == 3 and len(plain[2][0]) == 2  # the last batch holds the remainder


def test_training_batches_cover_every_example_once_per_epoch_in_a_new_order():
    from ser.training.fit_loop import MixupBatches

    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1) * np.ones((1, 2, 3), np.float32)
    batches = MixupBatches(x, np.arange(10) % 2, 2, batch=4, mixup=0.0, seed=1)
    first = np.concatenate([batches[i][0][:, 0, 0] for i in range(len(batches))])
    batches.on_epoch_end()
    second = np.concatenate([batches[i][0][:, 0, 0] for i in range(len(batches))])
    assert sorted(first) == sorted(second) == list(range(10))
    assert list(first) != list(second)


def test_placement_without_a_gpu_is_the_plain_cpu():
    from ser.training.placement import device_placement, visible_gpus

    if visible_gpus():
        pytest.skip("a GPU is visible")
    placement = device_placement()
    assert placement.replicas == 1 and placement.strategy is None
    with placement.scope():
        assert build_model((20, 8), 2, **SMALL).count_params() > 0


def test_average_models_is_the_mean_of_its_members_and_round_trips(tmp_path):
    from ser.training.model import average_models

    members = [
        build_model((40, 16), 4, name=f"m{i}", utterance_norm=True, pooling="attention", **SMALL) for i in range(3)
    ]
    x = np.random.default_rng(2).normal(size=(5, 40, 16)).astype("float32")
    ensemble = average_models(members)
    expected = np.mean([np.asarray(m(x)) for m in members], axis=0)
    assert np.allclose(np.asarray(ensemble(x)), expected, atol=1e-6)
    assert average_models(members[:1]) is members[0]
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = load_model(tmp_path / "ensemble.keras")
    assert np.allclose(np.asarray(loaded(x)), expected, atol=1e-6)


def tiny_features(features: Path, corpora: tuple[str, ...] = ("ravdess",)) -> tuple[Path, np.ndarray]:
    """A featurize-stage folder of random windows (4 classes, 30 frames x 8 mels); returns it and x.

    40 training clips of 4 speakers, 10 each, dealt to `corpora` in turn (speaker 1 to the first, 2 to the next ...);
    8 validation clips of the first speakers' counterparts (numbers + 10).
    """
    from ser.io import write_json

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 30, 8)).astype("float32"), np.arange(40) % 4
    features.mkdir(parents=True)
    number, copy = np.arange(40) // 10 + 1, np.zeros(40, np.int64)
    corpus = np.array([corpora[(n - 1) % len(corpora)] for n in number])

    def split(rows: slice, offset: int = 0) -> dict[str, np.ndarray]:
        """The split's arrays as featurize writes them: namespaced clip ids and speakers, each row's corpus."""
        c, n = corpus[rows], number[rows] + offset
        return {
            "x": x[rows],
            "y": y[rows],
            "clip_id": np.array([f"{a}:clip{i:03d}-{b:02d}" for i, (a, b) in enumerate(zip(c, n, strict=True))]),
            "speaker": np.array([f"{a}:{b:02d}" for a, b in zip(c, n, strict=True)]),
            "corpus": c,
            "copy": copy[rows],
        }

    np.savez(features / "train.npz", **split(slice(None)))
    np.savez(features / "val.npz", **split(slice(0, 8), offset=10))
    write_json(
        features / "stats.json",
        {"classes": ["a", "b", "c", "d"], "shape": [30, 8], "mean": [0.0] * 8, "variance": [1.0] * 8},
    )
    return features, x


JAX_TRAIN = """
import sys, keras, numpy as np
from pathlib import Path
from ser.config import Params
from ser.training.train import train
from tests.conftest import tiny_params
assert keras.backend.backend() == "jax", keras.backend.backend()
out = Path(sys.argv[1])
params = Params.model_validate(tiny_params(model={"frontend": sys.argv[2]}, train={"epochs": 2}))
print(train(params, out / "features", out / "model", out / "history.csv"))
from ser.training.model import load_model
x = np.load(out / "features" / "train.npz")["x"][:4]
np.save(out / "probs.npy", np.asarray(load_model(out / "model" / "model.keras")(x)))
"""


@pytest.mark.parametrize("frontend", ["conv1d", "conv2d"])
def test_a_model_trained_on_the_jax_backend_loads_and_predicts_alike_on_tensorflow(tmp_path, frontend):
    # GPU machines without TensorFlow train with KERAS_BACKEND=jax; serving loads the model on TensorFlow.
    pytest.importorskip("jax")
    _, x = tiny_features(tmp_path / "features")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", JAX_TRAIN, str(tmp_path), frontend],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'epochs_run': 2" in done.stdout
    served = np.asarray(load_model(tmp_path / "model" / "model.keras")(x[:4]))
    assert np.allclose(served, np.load(tmp_path / "probs.npy"), atol=1e-5)


def test_train_with_ensemble_fits_each_seed_and_saves_one_averaging_model(tmp_path):
    from ser.config import Params
    from ser.io import read_json
    from ser.training.train import history_summary, train
    from tests.conftest import tiny_params

    params = Params.model_validate(tiny_params(train={"ensemble": 2, "epochs": 2}, model={"stats_head": False}))
    features, x = tiny_features(tmp_path / "features")
    summary = train(params, features, tmp_path / "model", tmp_path / "reports" / "history.csv")
    history = pd.read_csv(tmp_path / "reports" / "history.csv")
    assert sorted(history["member"].unique()) == [0, 1] and (tmp_path / "reports" / "curves.png").is_file()
    assert summary["epochs_run"] == [2, 2] and summary["ensemble"] == 2
    assert {k: summary[k] for k in ("epochs_run", "best_epoch")} == history_summary(history, params.train.schedule)
    assert read_json(tmp_path / "model" / "preprocess.json")["training"] == summary
    model = load_model(tmp_path / "model" / "model.keras")
    assert [layer.name for layer in model.layers[1:-1]] == ["cnn_lstm_seed42", "cnn_lstm_seed43"]
    members = [np.asarray(model.get_layer(n)(x[:4])) for n in ("cnn_lstm_seed42", "cnn_lstm_seed43")]
    assert not np.allclose(members[0], members[1])  # different seeds, different models
    assert np.allclose(np.asarray(model(x[:4])), np.mean(members, axis=0), atol=1e-6)


def test_average_weights_keeps_the_mean_of_the_last_epochs():
    from ser.training.fit_loop import AverageWeights

    model = build_model((16, 8), 3, **SMALL)
    start = model.get_weights()
    callback = AverageWeights(epochs=4, last=2)
    callback.set_model(model)
    seen = []
    for epoch in range(4):
        model.set_weights([w + (epoch + 1) if np.issubdtype(w.dtype, np.floating) else w for w in start])
        seen.append(model.get_weights())
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    for got, third, fourth in zip(model.get_weights(), seen[2], seen[3], strict=True):
        assert np.allclose(got, (third + fourth) / 2, atol=1e-5)  # epochs 1-2 left out


def test_cosine_schedule_runs_every_epoch_and_keeps_the_last(tmp_path):
    from ser.config import Params
    from ser.training.fit_loop import learning_rate_schedule
    from ser.training.train import train
    from tests.conftest import tiny_params

    # average_last above epochs is capped: all 3 epochs are averaged (a quick run needs no second override).
    params = Params.model_validate(tiny_params(train={"epochs": 3, "schedule": "cosine", "average_last": 10}))
    _, callbacks = learning_rate_schedule(params.train, steps=5)
    assert [(type(c).__name__, c.first) for c in callbacks] == [("AverageWeights", 0)]
    features, x = tiny_features(tmp_path / "features")
    summary = train(params, features, tmp_path / "model", tmp_path / "reports" / "history.csv")
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 3  # no early stop; the end is kept
    probs = np.asarray(load_model(tmp_path / "model" / "model.keras")(x[:4]))
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def two_corpora() -> tuple[np.ndarray, np.ndarray]:
    """Labels and corpora of 64 rows, unbalanced both ways: corpus a has 40 class-0 and 8 class-1 clips, corpus b
    has 4 and 12."""
    counts = {("a", 0): 40, ("a", 1): 8, ("b", 0): 4, ("b", 1): 12}
    y = np.concatenate([np.full(n, c) for (_, c), n in counts.items()])
    corpus = np.concatenate([np.full(n, k) for (k, _), n in counts.items()])
    return y, corpus


def test_balance_weights_give_every_corpus_and_each_of_its_classes_the_same_weight():
    from ser.training.fit_loop import balance_weights

    y, corpus = two_corpora()
    y, corpus = np.append(y, 2), np.append(corpus, "b")  # a class only corpus b has: its share is b's alone
    weights = balance_weights(y, corpus, "weights")
    assert weights is not None and weights.dtype == np.float32 and weights.shape == y.shape
    assert np.isclose(weights.mean(), 1, atol=1e-6)
    assert np.isclose(weights[corpus == "a"].sum(), weights[corpus == "b"].sum(), rtol=1e-5)
    for k, classes in (("a", (0, 1)), ("b", (0, 1, 2))):
        shares = [weights[(corpus == k) & (y == c)].sum() for c in classes]
        assert np.allclose(shares, shares[0], rtol=1e-5)
        assert all(np.unique(weights[(corpus == k) & (y == c)]).size == 1 for c in classes)  # a cell's rows alike
    assert balance_weights(y, corpus, "sampler") == pytest.approx(weights)  # the sampler draws by the same weights
    assert balance_weights(y, corpus, "none") is None
    plain = balance_weights(y, None, "weights")  # no corpora: plain class balance
    assert plain is not None and all(np.isclose(plain[y == c].sum(), plain[y == 0].sum(), rtol=1e-5) for c in (1, 2))


def test_mixup_batches_carry_the_weights_mixed_as_the_labels_are():
    from ser.training.fit_loop import MixupBatches, balance_weights

    y, corpus = two_corpora()
    weights = balance_weights(y, corpus, "weights")
    assert weights is not None
    x = np.zeros((len(y), 3, 2), np.float32)
    x[:, :, 0], x[:, :, 1] = np.arange(len(y))[:, None], weights[:, None]  # each row's index and weight
    plain = MixupBatches(x, y, 2, batch=16, mixup=0.0, seed=0, weights=weights, balance="weights")
    seen = []
    for i in range(len(plain)):
        xb, yb, wb = plain[i]
        rows = xb[:, 0, 0].astype(int)
        assert np.array_equal(wb, weights[rows]) and np.array_equal(yb.argmax(1), y[rows])
        seen.extend(rows)
    assert sorted(seen) == list(range(len(y)))  # "weights": every row once an epoch, as without balance
    mixed = MixupBatches(x, y, 2, batch=16, mixup=0.4, seed=0, weights=weights, balance="weights")
    for i in range(len(mixed)):
        xb, yb, wb = mixed[i]
        assert wb.shape == (len(xb),) and np.allclose(wb, xb[:, 0, 1], atol=1e-5)  # the same mix as the rows'
        assert np.allclose(yb.sum(1), 1, atol=1e-5)
    assert len(MixupBatches(x, y, 2, batch=16, mixup=0.4, seed=0)[0]) == 2  # no weights: (x, y) batches


def test_the_sampler_draws_every_corpus_and_class_about_equally():
    from ser.training.fit_loop import MixupBatches, balance_weights

    y, corpus = two_corpora()
    x = np.broadcast_to(np.arange(len(y), dtype=np.float32)[:, None, None], (len(y), 3, 2)).copy()
    batches = MixupBatches(
        x, y, 2, batch=16, mixup=0.0, seed=0, weights=balance_weights(y, corpus, "sampler"), balance="sampler"
    )
    drawn, epochs = [], []
    for _ in range(200):
        epoch = np.concatenate([batches[i][0][:, 0, 0] for i in range(len(batches))]).astype(int)
        assert all(len(batches[i]) == 2 for i in range(len(batches)))  # the batches are balanced: no weights
        assert len(epoch) == len(y)  # an epoch is as long as the split, drawn with replacement
        drawn.append(epoch)
        epochs.append(tuple(epoch))
        batches.on_epoch_end()
    rows = np.concatenate(drawn)
    cells = {(k, c): ((corpus[rows] == k) & (y[rows] == c)).mean() for k in ("a", "b") for c in (0, 1)}
    assert all(abs(share - 0.25) < 0.02 for share in cells.values()), cells  # 40 : 8 : 4 : 12 rows drawn 1 : 1 : 1 : 1
    assert len(set(epochs)) == len(epochs)  # every epoch draws again


def test_train_balances_two_corpora_with_weights_and_records_it(tmp_path, monkeypatch):
    from ser.config import Params
    from ser.io import read_json
    from ser.training import train as train_module
    from tests.conftest import tiny_params

    calls, real = [], train_module.balance_weights

    def spy(y, corpus, mode):
        calls.append((len(y), None if corpus is None else sorted(set(corpus.tolist())), mode))
        return real(y, corpus, mode)

    monkeypatch.setattr(train_module, "balance_weights", spy)
    params = Params.model_validate(tiny_params(train={"epochs": 2, "balance": "weights"}))
    features, x = tiny_features(tmp_path / "features", corpora=("ravdess", "emodb"))
    summary = train_module.train(params, features, tmp_path / "model", tmp_path / "reports" / "history.csv")
    assert summary["balance"] == "weights" and summary["epochs_run"] == 2
    assert read_json(tmp_path / "model" / "preprocess.json")["training"] == summary
    assert calls and all(call == (40, ["emodb", "ravdess"], "weights") for call in calls)  # the rows' own corpora
    probs = np.asarray(load_model(tmp_path / "model" / "model.keras")(x[:4]))
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_weight_averaging_needs_the_cosine_schedule():
    from ser.config import Params
    from tests.conftest import tiny_params

    train = {"schedule": "plateau", "average_last": 2}
    with pytest.raises(ValueError, match=r"average_last \(2\) needs schedule: cosine.*train.average_last=0"):
        Params.model_validate(tiny_params(train=train))
