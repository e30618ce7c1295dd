"""The `evaluate` stage: score the model on the test split, write metrics and plots, apply gates.

Metrics: accuracy, unweighted average recall (UAR = macro recall), macro-F1,
per-class precision/recall/F1, the confusion matrix, the expected calibration error
and the share of clips predicted as each class — as JSON for
`dvc metrics show`, a predictions CSV for `dvc plots show` (confusion template)
and a PNG. Gates from `evaluate.gates` fail the stage, naming gate and value. A model with an enrolment head
also gets `enrolment` metrics: the test speakers scored in enrolment mode (`ser.training.enrolment`).

    ser evaluate --params params.yaml --model-dir models --features data/features \
        --metrics reports/metrics.json --predictions reports/predictions.csv \
        --confusion-png reports/confusion.png
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ser.config import EnrolmentParams, GateParams
from ser.io import atomic_path, write_json
from ser.training.enrolment import FILE as ENROLMENT_FILE
from ser.training.enrolment import EnrolmentHead, Speakers, enrolment_probs

log = logging.getLogger(__name__)


#: Which metric each gate in `evaluate.gates` bounds from below.
GATE_METRICS = {
    "min_accuracy": "accuracy",
    "min_uar": "uar",
    "min_macro_f1": "macro_f1",
    "min_class_recall": "min_class_recall",
}


class GateError(RuntimeError):
    """The model missed a quality gate."""


def score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, UAR, macro-F1, per-class P/R/F1 and the confusion matrix.

    Classes with no test example are left out of UAR and macro-F1 (as for corpora
    that lack a class), but still listed per class with support 0.
    """
    present = sorted(set(np.asarray(y_true).tolist()))
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": float(np.mean([r[i] for i in present])),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "min_class_recall": float(min(r[i] for i in present)),
        "n_test": int(len(y_true)),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


ECE_BINS = 15  # equal-width confidence bins of the expected calibration error


def calibration(probs: np.ndarray, y_true: np.ndarray, classes: list[str]) -> dict:
    """Expected calibration error and the share of clips predicted as each class.

    ECE: the clips binned by their top probability (`ECE_BINS` equal-width bins), the mean over bins of
    |accuracy - mean confidence| weighted by the bin's share of clips; 0 is perfect. The predicted-class
    share shows a model that floods one class on unfamiliar speech (a uniform test set gives 1/len(classes)).
    """
    probs, y_true = np.asarray(probs, np.float64), np.asarray(y_true)
    confidence, pred = probs.max(1), probs.argmax(1)
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs((pred[inside] == y_true[inside]).mean() - confidence[inside].mean())
    counts = np.bincount(pred, minlength=len(classes))
    return {
        "ece": float(ece),
        "mean_confidence": float(confidence.mean()),
        "predicted_share": {c: float(counts[i] / max(len(pred), 1)) for i, c in enumerate(classes)},
    }


def check_gates(metrics: dict, gates: GateParams) -> list[str]:
    """Messages for every gate the metrics miss (empty when all pass)."""
    failures = []
    for key, value in gates.model_dump().items():
        metric = GATE_METRICS[key]
        if metrics[metric] < value:
            failures.append(f"gate evaluate.gates.{key}: {metric} {metrics[metric]:.3f} is below {value:.3f}")
    return failures


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix as a PNG (counts in the cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.75 * len(classes), 0.75 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="actual", title=title)
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    for i, j in np.ndindex(cm.shape):
        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def enrolment_metrics(
    model_dir: Path,
    probs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    actor: np.ndarray,
    classes: list[str],
    params: EnrolmentParams,
) -> dict:
    """The test split (features `x`, labels, speakers) in enrolment mode: `params.clips` random reference clips per
    test speaker, `params.draws` times; mean accuracy, UAR and macro-F1 over the draws (and each draw's).

    Empty without `enrolment.npz`, before any clip statistics are computed.
    """
    if not (model_dir / ENROLMENT_FILE).is_file():
        return {}
    head = EnrolmentHead.load(model_dir / ENROLMENT_FILE)
    test = Speakers.of(x, y, actor)
    draws = [
        score(test.y, p.argmax(1), classes) for p in enrolment_probs(head, probs, test, params.clips, params.draws)
    ]
    keys = ("accuracy", "uar", "macro_f1")
    return {
        "reference_clips": params.clips,
        "draws": params.draws,
        **{k: float(np.mean([d[k] for d in draws])) for k in keys},
        "per_draw": [{k: d[k] for k in keys} for d in draws],
    }


def evaluate(
    model_dir: Path,
    features_dir: Path,
    metrics_path: Path,
    predictions_path: Path,
    confusion_png: Path,
    gates: GateParams,
    enrolment: EnrolmentParams | None = None,
) -> dict:
    """Score the saved model on the test split; raise GateError after writing results if a gate fails.

    With `enrolment.npz` in `model_dir`, the metrics also hold `enrolment`: the same clips scored in enrolment
    mode (`enrolment_metrics`), beside the single-clip scores that the gates read.
    """
    from ser.io import read_json
    from ser.training.model import load_model

    classes = read_json(model_dir / "preprocess.json")["classes"]
    model = load_model(model_dir / "model.keras")
    with np.load(features_dir / "test.npz") as data:
        x, y, clip_ids = data["x"], data["y"], data["clip_id"]
        actor = data["actor"] if "actor" in data.files else None
    probs = model.predict(x, batch_size=64, verbose=0)
    pred = probs.argmax(axis=1)
    metrics = score(y, pred, classes) | calibration(probs, y, classes)
    if actor is not None:
        enrolled = enrolment_metrics(model_dir, probs, x, y, actor, classes, enrolment or EnrolmentParams())
        metrics |= {"enrolment": enrolled} if enrolled else {}
    with atomic_path(predictions_path) as tmp:
        pd.DataFrame(
            {"clip_id": clip_ids, "actual": np.array(classes)[y], "predicted": np.array(classes)[pred]}
        ).to_csv(tmp, index=False)
    plot_confusion(
        metrics["confusion"],
        classes,
        confusion_png,
        f"test UAR {metrics['uar']:.2f}, accuracy {metrics['accuracy']:.2f}",
    )
    failures = check_gates(metrics, gates)
    write_json(metrics_path, {k: v for k, v in metrics.items() if k != "confusion"} | {"gates_passed": not failures})
    log.info("test accuracy %.3f, UAR %.3f, macro-F1 %.3f", metrics["accuracy"], metrics["uar"], metrics["macro_f1"])
    if "enrolment" in metrics:
        e = metrics["enrolment"]
        log.info(
            "enrolment mode (%d reference clips): accuracy %.3f, UAR %.3f",
            e["reference_clips"],
            e["accuracy"],
            e["uar"],
        )
    if failures:
        raise GateError("; ".join(failures))
    return metrics
