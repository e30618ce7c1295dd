"""`ser.training.evaluate.calibration`: expected calibration error and the predicted-class share."""

from __future__ import annotations

import numpy as np
import pytest

from ser.training.evaluate import ECE_BINS, calibration

CLASSES = ["a", "b", "c"]


def test_a_model_right_as_often_as_it_is_sure_has_no_calibration_error():
    # 10 clips at confidence 0.8 (top bin 0.8-0.867), 8 of them right: accuracy equals confidence.
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    y = np.array([0] * 8 + [1, 2])
    out = calibration(probs, y, CLASSES)
    assert out["ece"] == pytest.approx(0.0, abs=1e-9) and out["mean_confidence"] == pytest.approx(0.8)
    assert out["predicted_share"] == {"a": 1.0, "b": 0.0, "c": 0.0}  # one class flooded: visible here


def test_overconfident_mistakes_give_their_gap_weighted_by_their_share():
    sure_wrong = np.tile([0.05, 0.95, 0.0], (4, 1))  # 4 clips, 95 % sure, all wrong
    unsure_right = np.tile([0.5, 0.3, 0.2], (6, 1))  # 6 clips, 50 % sure, all right
    probs, y = np.concatenate([sure_wrong, unsure_right]), np.zeros(10, int)
    out = calibration(probs, y, CLASSES)
    assert out["ece"] == pytest.approx(0.4 * 0.95 + 0.6 * 0.5)
    assert out["predicted_share"] == {"a": 0.6, "b": 0.4, "c": 0.0}
    assert ECE_BINS == 15  # the usual binning: the number is comparable with published ECEs
