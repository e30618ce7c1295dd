"""The NumPy runtime (`ser.serving.numpy_graph`) computes what Keras computes, for every model `ser` builds."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ser.serving.numpy_graph import UnsupportedModel, export_graph, run_graph
from ser.training.model import average_models, build_model

SHAPE = (37, 12)  # odd frame counts exercise "same" padding and pooling


def randomise_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Non-trivial moving statistics (a fresh BatchNorm is the identity, which would hide a mistake)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 2, n), rng.normal(0, 1, n), rng.normal(0, 1, n), rng.uniform(0.5, 3, n)]
            )


@pytest.mark.parametrize(
    "options",
    [
        {"pooling": "last"},
        {"pooling": "mean", "utterance_norm": True},
        {"pooling": "attention", "bidirectional": True, "utterance_norm": True},
        {"pooling": "last", "bidirectional": True, "lstm_units": [6]},
        {"pooling": "attention", "kernel_size": 4, "pool_size": 3, "filters": [5, 7, 3]},
    ],
    ids=["last", "mean", "attention-bilstm", "last-bilstm", "even-kernel"],
)
def test_exported_model_matches_keras(options):
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    params = {"filters": [6, 5], "lstm_units": [7, 5], "dense_units": 6, "specaugment": {"rate": 1.0}} | options
    mean, variance = rng.normal(0, 1, SHAPE[1]), rng.uniform(0.5, 2, SHAPE[1])
    model = build_model(SHAPE, 4, mean=mean, variance=variance, **params)
    randomise_batchnorm(model, rng)
    x = rng.normal(0, 2, (5, *SHAPE)).astype(np.float32)
    plan, arrays = export_graph(model)
    got = run_graph(plan, arrays, x)
    assert got.shape == (5, 4) and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - np.asarray(model(x, training=False))).max() < 1e-5


def test_ensemble_with_a_statistics_head_matches_keras():
    from ser.training.stats_head import fit_stats_head

    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    members = [build_model(SHAPE, 3, filters=[4], lstm_units=[4], dense_units=4, name=f"m{i}") for i in range(2)]
    x = rng.normal(0, 3, (30, *SHAPE)).astype(np.float32)
    y = np.arange(30) % 3
    head, _ = fit_stats_head(x, y, x[:9], y[:9], 3)
    model = average_models([average_models(members), head], name="cnn_lstm_stats")
    plan, arrays = export_graph(model)
    assert [n["op"] for n in plan["nodes"]] == ["model", "model", "average"]
    assert np.abs(run_graph(plan, arrays, x[:6]) - np.asarray(model(x[:6], training=False))).max() < 1e-5


def test_an_unknown_layer_is_refused_by_name():
    model = build_model((16, 8), 3, filters=[4], lstm_units=[4], dense_units=4, frontend="conv2d")
    with pytest.raises(UnsupportedModel, match="Conv2D|Reshape"):
        export_graph(model)
