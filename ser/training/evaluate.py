"""The `evaluate` stage: score the model on the test split, write metrics and plots, apply gates.

Metrics: accuracy, unweighted average recall (UAR = macro recall), macro-F1,
per-class precision/recall/F1, the confusion matrix, the expected calibration error
and the share of clips predicted as each class — as JSON for
`dvc metrics show`, a predictions CSV for `dvc plots show` (confusion template)
and a PNG, pooled over the test split and per test corpus (`per_corpus`: each corpus's UAR and macro-F1 over
the classes it has). Gates from `evaluate.gates` (pooled) and `evaluate.corpus_gates` (per corpus) fail the
stage, naming gate and value. A model with an enrolment head also gets `enrolment` metrics: the test speakers
scored in enrolment mode (`ser.training.enrolment`).

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


def check_gates(metrics: dict, gates: GateParams, key: str = "evaluate.gates") -> list[str]:
    """Messages for every gate the metrics miss (empty when all pass); `key` names the gates in the messages."""
    failures = []
    for name, value in gates.model_dump().items():
        metric = GATE_METRICS[name]
        if metrics[metric] < value:
            failures.append(f"gate {key}.{name}: {metric} {metrics[metric]:.3f} is below {value:.3f}")
    return failures


def check_corpus_gates(per_corpus: dict, gates: dict[str, GateParams]) -> list[str]:
    """`check_gates` for each corpus named in `evaluate.corpus_gates`; a corpus with no test clips fails."""
    failures = []
    for corpus, floor in gates.items():
        key = f"evaluate.corpus_gates.{corpus}"
        if corpus not in per_corpus:
            failures.append(f"gate {key}: no test clips of corpus {corpus!r} (test corpora: {sorted(per_corpus)})")
        else:
            failures += check_gates(per_corpus[corpus], floor, key)
    return failures


def corpus_metrics(probs: np.ndarray, y: np.ndarray, corpus: np.ndarray | None, classes: list[str]) -> dict:
    """Each test corpus's scores (UAR and macro-F1 over the classes it has); empty for one corpus or none."""
    if corpus is None or len(np.unique(corpus)) < 2:
        return {}
    out = {}
    for name in np.unique(corpus):
        rows = corpus == name
        m = score(y[rows], probs[rows].argmax(1), classes) | calibration(probs[rows], y[rows], classes)
        m["classes_in_corpus"] = [classes[i] for i in sorted(set(y[rows].tolist()))]
        out[str(name)] = m
    return out


def one_corpus(metrics: dict, corpus: np.ndarray | None) -> dict:
    """The pooled metrics as the only corpus's, for its gates (a single-corpus test split has no `per_corpus`)."""
    names = [] if corpus is None else np.unique(corpus).tolist()
    return {str(names[0]): metrics} if len(names) == 1 else {}


def plot_confusion(
    confusion: list[list[int]],
    classes: list[str],
    path: Path,
    title: str,
    more: list[tuple[str, list[list[int]]]] | None = None,
) -> None:
    """Row-normalised confusion matrix as a PNG (counts in the cells); `more`: further (title, confusion) panels
    side by side, e.g. one per test corpus, each showing only the rows of classes it has."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(title, confusion), *(more or [])]
    side = 1 + 0.75 * len(classes)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), 0.75 * len(classes)), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], panels, strict=True):
        cm = np.asarray(matrix, dtype=float)
        rows = [i for i in range(len(classes)) if cm[i].sum() > 0] if len(panels) > 1 else list(range(len(classes)))
        cm = cm[rows]
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set(xticks=range(len(classes)), yticks=range(len(rows)), xlabel="predicted", ylabel="actual", title=name)
        ax.set_xticklabels(classes, rotation=45, ha="right")
        ax.set_yticklabels([classes[i] for i in rows])
        for i, j in np.ndindex(cm.shape):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def enrolment_metrics(
    model_dir: Path,
    probs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    speaker: np.ndarray,
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
    test = Speakers.of(x, y, speaker)
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
    corpus_gates: dict[str, GateParams] | None = None,
) -> dict:
    """Score the saved model on the test split, pooled and per corpus; raise GateError after writing results if a
    gate (`gates`, or a corpus's in `corpus_gates`) fails.

    With `enrolment.npz` in `model_dir`, the metrics also hold `enrolment`: the same clips scored in enrolment
    mode (`enrolment_metrics`), beside the single-clip scores that the gates read.
    """
    from ser.io import read_json
    from ser.training.model import load_model

    classes = read_json(model_dir / "preprocess.json")["classes"]
    model = load_model(model_dir / "model.keras")
    with np.load(features_dir / "test.npz") as data:
        x, y, clip_ids = data["x"], data["y"], data["clip_id"]
        speaker = data["speaker"] if "speaker" in data.files else None
        corpus = data["corpus"] if "corpus" in data.files else None
    probs = model.predict(x, batch_size=64, verbose=0)
    pred = probs.argmax(axis=1)
    metrics = score(y, pred, classes) | calibration(probs, y, classes)
    per_corpus = corpus_metrics(probs, y, corpus, classes)
    if speaker is not None:
        enrolled = enrolment_metrics(model_dir, probs, x, y, speaker, classes, enrolment or EnrolmentParams())
        metrics |= {"enrolment": enrolled} if enrolled else {}
    with atomic_path(predictions_path) as tmp:
        table = {"clip_id": clip_ids, "actual": np.array(classes)[y], "predicted": np.array(classes)[pred]}
        pd.DataFrame(table | ({"corpus": corpus} if corpus is not None else {})).to_csv(tmp, index=False)
    plot_confusion(
        metrics["confusion"],
        classes,
        confusion_png,
        f"test{' (all corpora)' if per_corpus else ''}: UAR {metrics['uar']:.2f}, accuracy {metrics['accuracy']:.2f}",
        [
            (f"{name}: UAR {m['uar']:.2f}, accuracy {m['accuracy']:.2f}", m["confusion"])
            for name, m in per_corpus.items()
        ],
    )
    failures = check_gates(metrics, gates) + check_corpus_gates(
        per_corpus or one_corpus(metrics, corpus), corpus_gates or {}
    )
    if per_corpus:
        metrics["per_corpus"] = {n: {k: v for k, v in m.items() if k != "confusion"} for n, m in per_corpus.items()}
    write_json(metrics_path, {k: v for k, v in metrics.items() if k != "confusion"} | {"gates_passed": not failures})
    log.info("test accuracy %.3f, UAR %.3f, macro-F1 %.3f", metrics["accuracy"], metrics["uar"], metrics["macro_f1"])
    for name, m in per_corpus.items():
        log.info(
            "  %s: accuracy %.3f, UAR %.3f, macro-F1 %.3f (n = %d)",
            name,
            m["accuracy"],
            m["uar"],
            m["macro_f1"],
            m["n_test"],
        )
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
