"""Cross-corpus evaluation: score a trained model on any labelled folder of audio.

The labels are a labelled folder's table (`ser.data.tables`: TSV or CSV with a
header naming path and emotion, other columns ignored), or a header-less TSV of
`relative path <TAB> emotion`; emotions ours (neutral, calm, happy, sad, angry,
fearful, disgust, surprised) or mapped onto ours (`--map anger=angry`). Each clip
goes through the serving path (`Predictor`: the training window, or windows every
`hop_s` for longer clips, the front end, the exported model.onnx); clips labelled with a
class the model does not know are left out and counted, and classes absent from
the corpus are left out of UAR and macro-F1.
`--classes own` answers only the corpus's own classes (renormalised); `--calibrate N` first calibrates on N
clips of the corpus drawn at random (labels unused; `ser.serving.profiles`), `--profile` applies a saved profile.
Output: the same metrics JSON, predictions CSV and confusion PNG as `evaluate`.

    ser evaluate --model-dir models --corpus /data/other --labels other.tsv \
        --metrics reports/cross/metrics.json --predictions reports/cross/predictions.csv \
        --confusion-png reports/cross/confusion.png
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
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
    calibrate: int = 0,
    calibrate_seed: int = 0,
    shrink: float = 10.0,
    scale: bool = False,
    head_share: float | None = None,
    classes: str | None = None,
    profile: str | None = None,
) -> dict:
    """Score the model on the labelled clips; write metrics JSON, predictions CSV and a confusion PNG.

    Clips that fail to decode are listed in the JSON (`unreadable`) and left out, not fatal.

    Args:
        calibrate: > 0: first calibrate on that many clips of this corpus drawn at random (`calibrate_seed`; labels
            unused; `ser.serving.profiles.estimate` with `shrink`, `scale`; the head's share `head_share`), as
            `ser calibrate` would on a folder of them.
        classes: `own` answers only the classes the corpus has; a comma-separated subset answers those (clips of
            other classes left out); None: every class the model knows.
        profile: a saved profile of this model to apply instead (`ser calibrate`).
    """
    from ser.serving.predictor import Predictor
    from ser.serving.profiles import CalibrationError, Profile, StatsHead, class_subset, estimate, pick_profile
    from ser.training.model import load_model

    labels = read_labels(labels_tsv, corpus, emotions)
    predictor = Predictor(Path(model_dir), hop_s=hop_s)
    known = labels["emotion"].isin(predictor.classes)
    excluded = labels.loc[~known, "emotion"].value_counts().to_dict()
    if excluded:
        log.warning("left out %d clip(s) of classes the model does not know: %s", int((~known).sum()), excluded)
    wanted = sorted(set(labels.loc[known, "emotion"]), key=predictor.classes.index) if classes == "own" else classes
    keep = class_subset(predictor.classes, wanted)
    answer = predictor.classes if keep is None else [predictor.classes[i] for i in keep]
    scored, unreadable = [], []
    for row in tqdm(labels[known].itertuples(), total=int(known.sum()), desc="evaluate", unit="clip", disable=None):
        try:
            wave = load_audio(Path(corpus) / row.path, predictor.params.sample_rate)
        except AudioError as err:
            unreadable.append(str(err))
            continue
        probs, stats = predictor.run(predictor.featurize(wave)[0])
        scored.append((row.path, row.emotion, probs, stats))
    if not scored:
        raise AudioError(f"{corpus}: none of the labelled clips of known classes could be decoded: {unreadable[:3]}")
    used = pick_profile(predictor.profiles, profile)
    calibration_info: dict[str, Any] | None = None
    if calibrate > 0:
        if calibrate < 2:
            raise CalibrationError(f"--calibrate {calibrate}: a profile needs at least 2 clips")
        rng = np.random.default_rng(calibrate_seed)
        drawn = rng.choice(len(scored), min(calibrate, len(scored)), replace=False)
        head = StatsHead.of(load_model(Path(model_dir) / "model.keras"))
        stats = np.concatenate([scored[i][3] for i in drawn])
        mean, sd = estimate(stats, head.mean, head.scale, shrink=shrink, scale_too=scale)
        used = Profile("evaluate", mean, sd, head, share=head_share)
        calibration_info = {"clips": len(drawn), "seed": calibrate_seed, "shrink": shrink, "scale": scale}
        calibration_info["head_share"] = head_share
    preds = []
    for path, emotion, probs, stats in scored:
        if emotion not in answer:
            continue
        p, _ = predictor.answer(probs, stats, used, keep)
        mean_p = p.mean(axis=0)
        preds.append((path, emotion, answer[int(mean_p.argmax())], *mean_p))
    if not preds:
        raise CalibrationError(f"--classes {classes}: no clip of {corpus} is of those classes")
    table = pd.DataFrame(preds, columns=["path", "actual", "predicted", *answer])
    y = table["actual"].map(answer.index).to_numpy()
    metrics = score(y, table["predicted"].map(answer.index).to_numpy(), answer)
    metrics |= calibration(table[answer].to_numpy(), y, answer)  # flooding one class shows in predicted_share
    with atomic_path(predictions_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_confusion(
        metrics["confusion"],
        answer,
        confusion_png,
        f"{Path(corpus).name}: UAR {metrics['uar']:.2f}, accuracy {metrics['accuracy']:.2f}",
    )
    metrics |= {
        "corpus": str(corpus),
        "labels": str(labels_tsv),
        "classes_in_corpus": sorted(set(table["actual"])),
        "excluded_labels": excluded,
        "unreadable": unreadable,
        "answered_classes": answer,
        "calibration": calibration_info or ({"profile": used.name, **used.info} if used else None),
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
