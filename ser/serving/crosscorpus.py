"""Cross-corpus evaluation: score a trained model on any labelled folder of audio.

The labels are a labelled folder's table (`ser.data.tables`: TSV or CSV with a
header naming path and emotion, other columns ignored), or a header-less TSV of
`relative path <TAB> emotion`; emotions ours (neutral, calm, happy, sad, angry,
fearful, disgust, surprised) or mapped onto ours (`--map anger=angry`). Each clip
goes through the serving path (`Predictor`: the training window, or windows every
`hop_s` for longer clips, `features.extract`, the model); clips labelled with a
class the model does not know are left out and counted, and classes absent from
the corpus are left out of UAR and macro-F1.
Output: the same metrics JSON, predictions CSV and confusion PNG as `evaluate`.

    ser evaluate --model-dir models --corpus /data/other --labels other.tsv \
        --metrics reports/cross/metrics.json --predictions reports/cross/predictions.csv \
        --confusion-png reports/cross/confusion.png
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from ser.audio import AudioError, load_audio
from ser.io import atomic_path, write_json
from ser.labels import LabelError
from ser.training.evaluate import calibration, plot_confusion, score

log = logging.getLogger(__name__)


def read_labels(tsv: Path, corpus: Path, emotions: dict[str, str | None] | None = None) -> pd.DataFrame:
    """The labels table's (path, emotion) rows, every line and file checked (`ser.data.tables.read_table`).

    Args:
        emotions: the corpus's own label -> ours (None leaves those clips out), as a labelled source's mapping.

    Raises:
        LabelError: naming the table's line and what was expected (a header with path and emotion, or two
            tab-separated fields; an emotion of ours or a mapped one; a file that exists under `corpus`), or an
            empty or missing table.
    """
    from ser.data.clips import SourceError
    from ser.data.tables import read_table

    if not Path(corpus).is_dir():
        raise LabelError(f"{corpus}: corpus folder not found")
    try:
        rows, _ = read_table(Path(tsv), Path(corpus), emotions, require_speaker=False)
    except SourceError as err:
        raise LabelError(str(err)) from None
    return pd.DataFrame({"path": [r.rel for r in rows], "emotion": [r.emotion for r in rows]})


def evaluate_corpus(
    model_dir: Path,
    corpus: Path,
    labels_tsv: Path,
    metrics_path: Path,
    predictions_path: Path,
    confusion_png: Path,
    hop_s: float = 1.75,
    emotions: dict[str, str | None] | None = None,
) -> dict:
    """Score the model on the labelled clips; write metrics JSON, predictions CSV and a confusion PNG.

    Clips that fail to decode are listed in the JSON (`unreadable`) and left out, not fatal.
    """
    from ser.serving.predictor import Predictor

    labels = read_labels(labels_tsv, corpus, emotions)
    predictor = Predictor(Path(model_dir), hop_s=hop_s)
    classes = predictor.classes
    known = labels["emotion"].isin(classes)
    excluded = labels.loc[~known, "emotion"].value_counts().to_dict()
    if excluded:
        log.warning("left out %d clip(s) of classes the model does not know: %s", int((~known).sum()), excluded)
    preds, unreadable = [], []
    for row in tqdm(labels[known].itertuples(), total=int(known.sum()), desc="evaluate", unit="clip", disable=None):
        try:
            wave = load_audio(Path(corpus) / row.path, predictor.params.sample_rate)
        except AudioError as err:
            unreadable.append(str(err))
            continue
        feats, _ = predictor.featurize(wave)
        probs = predictor.infer(feats).mean(axis=0)
        preds.append((row.path, row.emotion, classes[int(probs.argmax())], *probs))
    if not preds:
        raise AudioError(f"{corpus}: none of the labelled clips of known classes could be decoded: {unreadable[:3]}")
    table = pd.DataFrame(preds, columns=["path", "actual", "predicted", *classes])
    y = table["actual"].map(classes.index).to_numpy()
    metrics = score(y, table["predicted"].map(classes.index).to_numpy(), classes)
    metrics |= calibration(table[classes].to_numpy(), y, classes)  # flooding one class shows in predicted_share
    with atomic_path(predictions_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_confusion(
        metrics["confusion"],
        classes,
        confusion_png,
        f"{Path(corpus).name}: UAR {metrics['uar']:.2f}, accuracy {metrics['accuracy']:.2f}",
    )
    metrics |= {
        "corpus": str(corpus),
        "labels": str(labels_tsv),
        "classes_in_corpus": sorted(set(table["actual"])),
        "excluded_labels": excluded,
        "unreadable": unreadable,
    }
    write_json(metrics_path, {k: v for k, v in metrics.items() if k != "confusion"})
    log.info(
        "%s: accuracy %.3f, UAR %.3f, macro-F1 %.3f on %d clips",
        corpus,
        metrics["accuracy"],
        metrics["uar"],
        metrics["macro_f1"],
        len(table),
    )
    return metrics
