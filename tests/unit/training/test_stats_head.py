"""The statistics head (`model.stats_head`): the Keras head reproduces the fitted logistic regression,
C is chosen on the validation split, and `train` saves one model averaging it with the CNN-LSTM."""

from __future__ import annotations

import numpy as np
import pytest

from ser.training.model import load_model
from ser.training.stats_head import C_GRID, clip_stats, fit_linear, fit_stats_head, linear_head


def clips(n: int, classes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 20 frames, 6 channels) windows whose channel means and spreads depend on the class."""
    rng = np.random.default_rng(seed)
    y = np.asarray(classes)[np.arange(n) % len(classes)]
    x = rng.normal(size=(n, 20, 6)) * (1 + 0.3 * y[:, None, None]) + 0.5 * y[:, None, None] * np.arange(6) / 6
    return x.astype(np.float32), y


def test_clip_stats_are_mean_then_std_over_frames_in_any_chunking():
    x, _ = clips(11, [0, 1])
    expected = np.concatenate([x.mean(1), x.std(1)], -1)
    assert np.allclose(clip_stats(x), expected, atol=1e-6)
    assert np.allclose(clip_stats(x, chunk=3), expected, atol=1e-6)


@pytest.mark.parametrize("train_classes", [[0, 1, 2, 3], [0, 2], [1, 2, 3]])
def test_keras_head_gives_the_regressions_probabilities_and_round_trips(tmp_path, train_classes):
    from sklearn.metrics import recall_score

    from ser.training.model import average_models

    x, y = clips(80, train_classes)
    xv, yv = clips(24, train_classes, seed=1)
    scaler, classifier, report = fit_linear(clip_stats(x), y, clip_stats(xv), yv)
    assert report["C"] in C_GRID and report["val_uar"] > 0.5
    assert report["val_uar"] == pytest.approx(max(report["val_uar_by_C"].values()), abs=1e-4)
    assert report["val_uar"] == pytest.approx(
        recall_score(yv, classifier.predict(scaler.transform(clip_stats(xv))), average="macro"), abs=1e-4
    )
    head = linear_head(x.shape[1:], scaler, classifier, 4)
    probs = np.asarray(head(xv))
    expected = np.zeros_like(probs)
    expected[:, classifier.classes_] = classifier.predict_proba(scaler.transform(clip_stats(xv)))
    assert probs.shape == (24, 4) and np.allclose(probs, expected, atol=1e-4)
    absent = sorted(set(range(4)) - set(train_classes))
    assert np.all(probs[:, absent] < 1e-9)  # never trained on, never predicted
    fused = average_models([head, linear_head(x.shape[1:], scaler, classifier, 4, name="again")], name="twice")
    fused.save(tmp_path / "fused.keras")
    assert np.allclose(np.asarray(load_model(tmp_path / "fused.keras")(xv)), probs, atol=1e-6)


def test_a_training_split_of_one_class_is_refused():
    x, y = clips(10, [3])
    with pytest.raises(ValueError, match="model.stats_head: the training split has 1 class"):
        fit_stats_head(x, y, x, y, 4)


def test_train_with_stats_head_saves_one_model_averaging_the_head_and_the_cnn_lstm(tmp_path):
    from ser.config import Params
    from ser.io import read_json
    from ser.training.train import train
    from tests.conftest import tiny_params
    from tests.unit.training.test_model import tiny_features

    params = Params.model_validate(tiny_params(model={"stats_head": True}, train={"epochs": 2}))
    features, x = tiny_features(tmp_path / "features")
    summary = train(params, features, tmp_path / "model", tmp_path / "reports" / "history.csv")
    assert summary["stats_head"]["C"] in C_GRID
    assert read_json(tmp_path / "model" / "preprocess.json")["training"] == summary
    model = load_model(tmp_path / "model" / "model.keras")
    assert model.name == "cnn_lstm_stats"
    parts = [np.asarray(model.get_layer(name)(x[:6])) for name in ("cnn_lstm", "stats_head")]
    assert not np.allclose(parts[0], parts[1])
    assert np.allclose(np.asarray(model(x[:6])), np.mean(parts, axis=0), atol=1e-6)


def test_refit_keeps_the_c_chosen_on_validation_and_refits_on_training_plus_validation():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    y = np.arange(60) % 3
    feats = rng.normal(size=(60, 6)) + y[:, None] * 0.8
    (tr, ytr), (va, yva), (more, ymore) = (feats[:36], y[:36]), (feats[36:48], y[36:48]), (feats[48:], y[48:])
    _, plain, plain_report = fit_linear(tr, ytr, va, yva)
    scaler, refitted, report = fit_linear(tr, ytr, va, yva, refit=(more, ymore))
    assert report["C"] == plain_report["C"] and report["val_uar"] == plain_report["val_uar"]
    assert report["refit_rows"] == 48 and "refit_rows" not in plain_report
    both, y_both = np.concatenate([tr, more]), np.concatenate([ytr, ymore])
    direct = LogisticRegression(C=report["C"], max_iter=3000).fit(StandardScaler().fit_transform(both), y_both)
    assert np.allclose(refitted.coef_, direct.coef_) and not np.allclose(refitted.coef_, plain.coef_)
    assert np.allclose(scaler.mean_, both.mean(0))


def test_train_with_refit_fits_the_cnn_lstm_and_the_head_on_training_plus_validation(tmp_path, caplog):
    import logging

    from ser.config import Params
    from ser.training.train import train
    from tests.conftest import tiny_params
    from tests.unit.training.test_model import tiny_features

    params = Params.model_validate(tiny_params(model={"stats_head": True}, train={"epochs": 2, "refit": True}))
    features, x = tiny_features(tmp_path / "features")  # 40 training and 8 validation clips
    with caplog.at_level(logging.INFO, logger="ser.training.train"):
        summary = train(params, features, tmp_path / "model", tmp_path / "reports" / "history.csv")
    assert "train.refit: fitting on 40 training + 8 validation windows" in caplog.text
    assert summary["refit"] is True and summary["train_clips"] == 48
    assert summary["stats_head"]["refit_rows"] == 48 and summary["stats_head"]["C"] in C_GRID
    model = load_model(tmp_path / "model" / "model.keras")
    assert np.asarray(model(x[:4])).shape == (4, 4)
