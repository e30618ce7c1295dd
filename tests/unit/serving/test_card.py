"""Model card and training curves: the card carries the metrics, classes, licence and
limitations, with source-specific wording; the history CSV becomes a two-panel PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ser.config import Params
from ser.labels import EMOTIONS
from ser.plots import plot_history
from ser.serving.card import model_card, write_model_card

CLASSES = list(EMOTIONS)
METRICS = {
    "accuracy": 0.6234,
    "uar": 0.5912,
    "macro_f1": 0.5876,
    "min_class_recall": 0.3125,
    "n_test": 120,
    "per_class": {
        c: {"precision": 0.5 + i / 100, "recall": 0.4 + i / 100, "f1": 0.45, "support": 16}
        for i, c in enumerate(CLASSES)
    },
    "gates_passed": True,
}
PREPROCESS = {
    "classes": CLASSES,
    "features": Params().features.model_dump(),
    "shape": [219, 64],
    "training": {"epochs_run": 30, "best_epoch": 22, "train_clips": 1920, "params": 330632},
}


def params(source: str) -> dict:
    return Params.model_validate({"data": {"source": source}}).model_dump(mode="json", by_alias=True)


def card(source: str = "ravdess", **kwargs) -> str:
    return model_card(METRICS, params(source), PREPROCESS, "1a2b3c.dir", "v20250101", "0123abcd", **kwargs)


def test_card_holds_metrics_classes_and_versions():
    text = card(date="2025-01-01")
    for number in ("62.3 %", "59.1 %", "58.8 %", "31.2 %"):  # accuracy, UAR, macro-F1, worst recall
        assert number in text
    assert "| surprised | 57.0 % | 47.0 % | 45.0 % | 16 |" in text
    assert ", ".join(CLASSES) in text and "330,632" in text and "Test clips: 120" in text
    assert "Speaker-independent" in text and "2 for test" in text and "gates passed" in text
    for value in ("1a2b3c.dir", "v20250101", "0123abcd", "2025-01-01"):
        assert value in text
    assert "64 mel bands" in text and "3.5 s window" in text and "[64, 128, 128]" in text


def test_card_names_the_statistics_head_only_when_there_is_one():
    assert "linear head" not in card()
    with_head = {**PREPROCESS, "training": {**PREPROCESS["training"], "stats_head": {"C": 0.003, "val_uar": 0.7512}}}
    text = model_card(METRICS, params("ravdess"), with_head, None, None, None)
    assert "averaged (1/2 each) with a linear head" in text and "C 0.003 chosen on the validation split" in text
    assert "validation UAR 75.1 %" in text and "refitted" not in text and "training windows," in text
    refit = {"C": 0.003, "val_uar": 0.7512, "refit_rows": 900}
    refitted = {**PREPROCESS, "training": {**PREPROCESS["training"], "stats_head": refit, "refit": True}}
    text = model_card(METRICS, params("ravdess"), refitted, None, None, None)
    assert "then refitted with that C on the training and validation splits" in text
    assert "training and validation windows (train.refit)" in text


def test_card_sections_licence_and_limitations():
    text = card()
    for heading in (
        "## Model details",
        "## Intended use",
        "### Out of scope",
        "## Training data",
        "## Evaluation",
        "## Limitations and ethical considerations",
        "## Versions",
    ):
        assert heading in text
    assert "CC BY-NC-SA 4.0" in text and "non-commercial" in text
    assert "24 professional actors (12 female, 12 male)" in text and "North-American English" in text
    for phrase in ("Acted, not spontaneous", "Cultural and language bias", "high-stakes", "clinical", "consent"):
        assert phrase.lower() in text.lower(), phrase
    assert "synthetic" not in text.lower().split("## training data")[1].split("##")[0]


def test_card_wording_depends_on_the_source():
    synthetic = card("synthetic")
    assert "Smoke-test model trained on synthetic audio: not for real use" in synthetic
    assert "must not be used on real audio" in synthetic and "CC BY-NC-SA" not in synthetic
    folder = card("../shared/data/ravdess-speech-16k")
    assert "RAVDESS-layout audio in `../shared/data/ravdess-speech-16k`" in folder and "CC BY-NC-SA 4.0" in folder
    random = model_card(
        METRICS, {**params("ravdess"), "split": {"method": "random"}}, {"classes": CLASSES}, None, None, None
    )
    assert "test speakers were also heard in training" in random
    assert "unknown" in random and "Parameters | n/a" in random


def test_write_model_card(tmp_path):
    path = write_model_card(
        tmp_path / "card" / "model_card.md",
        METRICS,
        params("ravdess"),
        PREPROCESS,
        "md5",
        "v1",
        "abc",
        date="2025-01-01",
    )
    assert path.read_text() == card(date="2025-01-01").replace("1a2b3c.dir", "md5").replace("v20250101", "v1").replace(
        "0123abcd", "abc"
    )
    assert [p.name for p in path.parent.iterdir()] == ["model_card.md"]


def test_plot_history_draws_each_member_of_an_ensemble(tmp_path):
    epochs = np.arange(1, 9)
    members = [
        pd.DataFrame(
            {
                "epoch": epochs,
                "accuracy": 1 - k / epochs,
                "loss": 2 * k / epochs,
                "val_accuracy": 0.8 - k / epochs,
                "val_loss": 2.2 * k / epochs + 0.05 * epochs,
                "member": m,
            }
        )
        for m, k in enumerate((0.5, 0.8))
    ]
    pd.concat(members).to_csv(tmp_path / "history.csv", index=False)
    single = plot_history(tmp_path / "history.csv", tmp_path / "ensemble.png")
    members[0].drop(columns="member").to_csv(tmp_path / "first.csv", index=False)
    first = plot_history(tmp_path / "first.csv", tmp_path / "first.png")
    with Image.open(single) as both, Image.open(first) as one:
        # the second member's curves add ink the first member's chart does not have
        assert both.size == one.size
        assert (np.asarray(both.convert("L")) < 200).sum() > (np.asarray(one.convert("L")) < 200).sum()


def test_plot_history_draws_two_panels(tmp_path):
    epochs = np.arange(1, 13)
    pd.DataFrame(
        {
            "epoch": epochs,
            "accuracy": 1 - 0.8 / epochs,
            "loss": 2 / epochs,
            "val_accuracy": 0.9 - 0.7 / epochs,
            "val_loss": 2.2 / epochs + 0.01 * epochs,
        }
    ).to_csv(tmp_path / "history.csv", index=False)
    out = plot_history(tmp_path / "history.csv", tmp_path / "train" / "curves.png")
    assert out == tmp_path / "train" / "curves.png"
    # The cosine schedule keeps the end of training: no best-epoch line, a title saying so instead.
    cosine = plot_history(tmp_path / "history.csv", tmp_path / "cosine.png", schedule="cosine")
    with Image.open(out) as plateau_png, Image.open(cosine) as cosine_png:
        assert plateau_png.size != cosine_png.size or (np.asarray(plateau_png) != np.asarray(cosine_png)).any()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 2 * image.height > 600
        assert np.asarray(image.convert("L"), dtype=float).std() > 5
    (tmp_path / "empty.csv").write_text("epoch,accuracy,loss,val_accuracy,val_loss\n")
    with pytest.raises(ValueError, match="expected columns"):
        plot_history(tmp_path / "empty.csv", tmp_path / "empty.png")
