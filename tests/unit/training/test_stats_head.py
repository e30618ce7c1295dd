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


def voices(speakers: int, per: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of 8 features: the class moves features 0-1, each speaker's voice moves 2-7 by a large offset."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(speakers), per)
    y = np.tile(np.arange(3), speakers * per // 3 + 1)[: len(spk)]
    x = rng.normal(size=(len(spk), 8))
    x[:, :2] += np.eye(3)[y][:, :2] * 1.5
    x[:, 2:] += 4 * rng.normal(size=(speakers, 6))[spk]
    return x, y, spk + 100 * seed


def test_speaker_directions_span_where_the_speakers_means_differ():
    from ser.training.stats_head import speaker_directions

    rng = np.random.default_rng(0)
    spk = np.repeat(np.arange(5), 10)
    along = np.array([0.0, 3.0, 4.0, 0.0]) / 5
    x = rng.normal(scale=0.01, size=(50, 4)) + np.outer(rng.normal(size=5)[spk], along)
    basis = speaker_directions(x, spk, 2)
    assert basis.shape == (4, 2) and np.allclose(basis.T @ basis, np.eye(2), atol=1e-9)
    assert abs(basis[:, 0] @ along) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="speaker directions: 5 asked for, from 5 speakers \\(at most 4\\)"):
        speaker_directions(x, spk, 5)


def test_nap_fit_ignores_the_speaker_directions_and_serves_unprojected_rows():
    from sklearn.linear_model import LogisticRegression

    from ser.training.stats_head import speaker_directions

    x, y, spk = voices(8, 12, 0)
    xv, yv, _ = voices(3, 12, 1)
    scaler, classifier, report = fit_linear(x, y, xv, yv, speakers=spk, nap_grid=(0, 3, 5))
    assert report["nap_dims"] in (0, 3, 5) and set(report["val_uar_by_nap"]) == {"0", "3", "5"}
    assert report["val_uar"] == pytest.approx(max(report["val_uar_by_nap"].values()), abs=1e-4)
    _, fixed, fixed_report = fit_linear(x, y, xv, yv, speakers=spk, nap_grid=(5,))
    assert fixed_report["nap_dims"] == 5 and "val_uar_by_nap" not in fixed_report
    z, zv = scaler.transform(x), scaler.transform(xv)
    basis = speaker_directions(z, spk, 5)
    direct = LogisticRegression(C=fixed_report["C"], max_iter=3000).fit(z - z @ basis @ basis.T, y)
    # the projection is folded into the weights: raw rows in, the projected fit's scores out
    assert np.allclose(fixed.decision_function(zv), direct.decision_function(zv - zv @ basis @ basis.T), atol=1e-6)
    assert np.abs(fixed.coef_ @ basis).max() < 1e-9
    # a new voice's offset along those directions does not move the head's probabilities
    shifted = zv + 10 * np.random.default_rng(2).normal(size=(len(zv), 5)) @ basis.T
    assert np.allclose(fixed.predict_proba(shifted), fixed.predict_proba(zv), atol=1e-9)
    with pytest.raises(ValueError, match="nap_grid: projecting speaker directions out needs the training rows"):
        fit_linear(x, y, xv, yv, nap_grid=(0, 3))


def test_nap_refit_takes_its_directions_from_training_plus_validation_speakers():
    x, y, spk = voices(8, 12, 0)
    xv, yv, spkv = voices(3, 12, 1)
    _, _, report = fit_linear(x, y, xv, yv, speakers=spk, nap_grid=(4,), refit=(xv, yv, spkv))
    assert report["nap_dims"] == 4 and report["refit_rows"] == len(y) + len(yv)
    with pytest.raises(ValueError, match="nap_grid: refitting with speaker directions needs the added rows' speakers"):
        fit_linear(x, y, xv, yv, speakers=spk, nap_grid=(4,), refit=(xv, yv))
