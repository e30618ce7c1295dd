"""Model card and training curves: the card carries the metrics, classes, licence and
limitations, with source-specific wording; the history CSV becomes a two-panel PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ser.config import Params, load_params
from ser.labels import EMOTIONS
from ser.plots import plot_history
from ser.serving.card import model_card, write_model_card
from tests.conftest import REPO

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
PREPROCESS: dict = {
    "classes": CLASSES,
    "features": Params().features.model_dump(),
    "shape": [219, 64],
    "training": {"epochs_run": 30, "best_epoch": 22, "train_clips": 1920, "params": 330632},
}


RAVDESS = {
    "name": "ravdess",
    "kind": "ravdess",
    "language": "en",
    "licence": "CC-BY-NC-SA-4.0",
    "licence_url": "https://creativecommons.org/licenses/by-nc-sa/4.0/",
    "citation": "Livingstone & Russo, PLoS ONE 2018",
    "use": "all",
    "clips": {"train": 1200, "val": 120, "test": 120},
    "speakers": {"train": 20, "val": 2, "test": 2},
}
EMODB = {
    "name": "emodb",
    "kind": "emodb",
    "language": "de",
    "licence": "CC0-1.0",
    "licence_url": None,
    "citation": "Burkhardt et al., Interspeech 2005",
    "use": "all",
    "clips": {"train": 364, "val": 45, "test": 45},
    "speakers": {"train": 8, "val": 1, "test": 1},
}
PER_CORPUS = {
    "ravdess": {
        "accuracy": 0.7,
        "uar": 0.68,
        "macro_f1": 0.67,
        "ece": 0.05,
        "n_test": 120,
        "classes_in_corpus": CLASSES,
    },
    "emodb": {
        "accuracy": 0.6,
        "uar": 0.55,
        "macro_f1": 0.5,
        "ece": 0.112,
        "n_test": 45,
        "classes_in_corpus": ["neutral", "happy", "sad", "angry", "fearful", "disgust"],
    },
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
    for phrase in (
        "Acted, not spontaneous",
        "Cultural and language bias",
        "unlike the training corpora",
        "high-stakes",
        "clinical",
        "consent",
    ):
        assert phrase.lower() in text.lower(), phrase
    assert "synthetic" not in text.lower().split("## training data")[1].split("##")[0]


def test_card_wording_depends_on_the_source():
    synthetic = card("synthetic")
    assert "Smoke-test model trained on synthetic audio: not for real use" in synthetic
    assert "must not be used on real audio" in synthetic and "CC BY-NC-SA" not in synthetic
    assert "Commercial use" not in synthetic and "no third-party terms apply" in synthetic
    folder = card("../shared/data/ravdess-speech-16k")
    assert "RAVDESS-layout audio in `../shared/data/ravdess-speech-16k`" in folder and "CC BY-NC-SA 4.0" in folder
    random = model_card(
        METRICS, {**params("ravdess"), "split": {"method": "random"}}, {"classes": CLASSES}, None, None, None
    )
    assert "test speakers were also heard in training" in random
    assert "unknown" in random and "Parameters | n/a" in random


def corpora_card(*corpora: dict, metrics: dict = METRICS) -> str:
    return model_card(metrics, params("ravdess"), {**PREPROCESS, "corpora": list(corpora)}, None, None, None)


def section(text: str, heading: str) -> str:
    return text.split(f"{heading}\n")[1].split("\n## ")[0]


def test_card_describes_every_corpus_and_the_licence_it_inherits():
    text = corpora_card(RAVDESS, EMODB, metrics={**METRICS, "per_corpus": PER_CORPUS})
    data = section(text, "## Training data")
    assert (
        "| `ravdess` | English | 1,200 / 120 / 120 | 20 / 2 / 2 | "
        "[CC BY-NC-SA 4.0](https://creativecommons.org/licenses/by-nc-sa/4.0/) | Livingstone & Russo, PLoS ONE 2018 |"
    ) in data
    assert "| `emodb` | German | 364 / 45 / 45 | 8 / 1 / 1 | CC0 1.0 | Burkhardt et al., Interspeech 2005 |" in data
    assert "24 professional actors" in data and "Berlin Database of Emotional Speech" in data and "10 actors" in data
    licence = data.split("### Licence\n")[1]
    assert "ravdess (CC BY-NC-SA 4.0) and emodb (CC0 1.0)" in licence and "non-commercial and share-alike" in licence
    assert "Commercial use" in section(text, "### Out of scope")
    limits = section(text, "## Limitations and ethical considerations")
    assert "1,894 clips from 34 speakers (ravdess and emodb)" in limits and "German from 10 actors" in limits
    assert "Acted, not spontaneous emotion** (ravdess and emodb)" in limits


def test_card_claims_no_single_language_when_corpora_have_several():
    text = corpora_card(RAVDESS, EMODB)
    assert "clip of English or German speech" in text and "single English or German speaker" in text
    assert "other than English or German" in text
    for english_only in ("clip of English speech", "single English speaker", "non-English"):
        assert english_only not in text, english_only
    assert "clip of English speech" in corpora_card(RAVDESS) and "single English speaker" in corpora_card(RAVDESS)


def test_card_evaluation_has_a_per_corpus_table_for_several_test_corpora():
    text = section(corpora_card(RAVDESS, EMODB, metrics={**METRICS, "per_corpus": PER_CORPUS}), "## Evaluation")
    assert "| corpus | accuracy | UAR | macro-F1 | ECE | n | classes |" in text
    assert "| `emodb` | 60.0 % | 55.0 % | 50.0 % | 11.2 % | 45 | neutral, happy, sad, angry, fearful, disgust |" in text
    assert "| `ravdess` | 70.0 % | 68.0 % | 67.0 % | 5.0 % | 120 |" in text
    assert "over the classes that corpus has" in text and "| UAR | 59.1 % |" in text  # beside the pooled table
    one = {**METRICS, "per_corpus": {"ravdess": PER_CORPUS["ravdess"]}}
    assert "| corpus | accuracy |" not in corpora_card(RAVDESS, metrics=one)


def test_card_of_a_permissive_model_and_of_a_test_only_corpus():
    emodb = corpora_card(EMODB)
    assert "Commercial use" not in emodb and "permissively licensed" in emodb and "English" not in emodb
    held_out = {**RAVDESS, "use": "test", "clips": {"train": 0, "val": 0, "test": 1440}}
    text = corpora_card(EMODB, held_out)
    assert "| `ravdess` (test only) | English | 0 / 0 / 1,440 |" in text
    assert "Commercial use" not in text and "terms not inherited" in section(text, "## Training data")
    assert "Test-only corpora (a cross-corpus test" in section(text, "## Evaluation")
    unknown = {**EMODB, "name": "callcentre", "kind": "labelled", "licence": "unknown", "language": "fr"}
    text = corpora_card(RAVDESS, unknown)
    assert "Any use before the unknown licence terms of callcentre are checked" in text and "Commercial use" in text
    assert "How the emotions were elicited** in callcentre" in text and "A labelled corpus (French)" in text


def test_card_of_a_model_from_before_corpora_reads_the_params_sources():
    raw = Params.model_validate({"data": {"sources": ["ravdess", {"kind": "emodb", "use": "test"}]}})
    text = model_card(METRICS, raw.model_dump(mode="json", by_alias=True), PREPROCESS, None, None, None)
    assert "| `ravdess` | English | 1,440 in all | 24 in all |" in text and "| `emodb` (test only) | German |" in text
    assert "Evaluated also on emodb (CC0 1.0)" in text and "Commercial use" in text


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


def test_card_says_where_the_window_lies_and_whether_frames_are_normalised():
    aligned = PREPROCESS | {"features": PREPROCESS["features"] | {"align": "speech", "frame_norm": True}}
    text = model_card(METRICS, params("ravdess"), aligned, "1a2b3c.dir", "v1", "0123abcd")
    assert "3.5 s window starting 0.5 s before the clip's first speech" in text
    assert "each frame centred and scaled over its channels" in text
    fixed = card()  # a model from before speech alignment: its window at a fixed offset
    assert "3.5 s window starting 0.5 s into the clip" in fixed and "each frame centred" not in fixed
    # the augmented copies' kinds, as params.yaml's rates turn them on
    defaults = load_params(REPO / "params.yaml").model_dump(mode="json", by_alias=True)
    text = model_card(METRICS, defaults, aligned, "1a2b3c.dir", "v1", "0123abcd")
    assert "per training clip (noise, pitch, speed, crop, room, telephone)" in text
    assert "per training clip (noise, pitch, speed)" in fixed  # rates 0 in the code's defaults
