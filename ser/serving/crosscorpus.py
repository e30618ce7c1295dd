"""Cross-corpus evaluation: score a trained model on any labelled folder of audio.

The labels are a TSV of `relative path <TAB> emotion`, one clip per line (an
optional `path<TAB>emotion` header; blank lines and `#` comments skipped),
emotions in the RAVDESS vocabulary (neutral, calm, happy, sad, angry, fearful,
disgust, surprised). Each clip goes through the serving path (`Predictor`: the
training window, or windows every `hop_s` for longer clips, `features.extract`, the
model); clips labelled with a class the model does not know are left out and
counted, and classes absent from the corpus are left out of UAR and macro-F1.
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
from ser.labels import EMOTIONS, LabelError
from ser.training.evaluate import calibration, plot_confusion, score

log = logging.getLogger(__name__)


def read_labels(tsv: Path, corpus: Path) -> pd.DataFrame:
    """Parse the labels TSV into (path, emotion) rows, checking every line and file.

    Raises:
        LabelError: naming the TSV line and what was expected (two tab-separated fields, a RAVDESS
            emotion, a file that exists under `corpus`), or an empty / missing TSV.
    """
    if not Path(tsv).is_file():
        raise LabelError(f"{tsv}: labels file not found; expected a TSV of relative path<TAB>emotion")
    if not Path(corpus).is_dir():
        raise LabelError(f"{corpus}: corpus folder not found")
    rows, problems = [], []
    for n, line in enumerate(Path(tsv).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if n == 1 and [f.lower() for f in fields] == ["path", "emotion"]:
            continue
        if len(fields) != 2 or not all(fields):
            problems.append(f"line {n}: expected 'relative path<TAB>emotion', got {line!r}")
        elif fields[1].lower() not in EMOTIONS:
            problems.append(f"line {n}: emotion {fields[1]!r} is not one of {list(EMOTIONS)}")
        elif not (Path(corpus) / fields[0]).is_file():
            problems.append(f"line {n}: {fields[0]} not found under {corpus}")
        else:
            rows.append((fields[0], fields[1].lower()))
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise LabelError(f"{tsv}: " + "; ".join(problems[:10]) + more)
    if not rows:
        raise LabelError(f"{tsv}: no labelled clips")
    return pd.DataFrame(rows, columns=["path", "emotion"])


def evaluate_corpus(
    model_dir: Path,
    corpus: Path,
    labels_tsv: Path,
    metrics_path: Path,
    predictions_path: Path,
    confusion_png: Path,
    hop_s: float = 1.75,
) -> dict:
    """Score the model on the labelled clips; write metrics JSON, predictions CSV and a confusion PNG.

    Clips that fail to decode are listed in the JSON (`unreadable`) and left out, not fatal.
    """
    from ser.serving.predictor import Predictor

    labels = read_labels(labels_tsv, corpus)
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
