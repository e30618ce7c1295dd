"""Model card: a markdown description of a packaged model, written at packaging time.

Built only from what packaging already holds (the metrics of reports/metrics.json,
the whole params.yaml, the model's preprocess.json and the version identifiers),
so the card always describes the exact model saved to the store. Sections follow
Mitchell et al., "Model Cards for Model Reporting" (2019): details, intended use,
training data, evaluation, limitations and ethics, versions. This module assembles
them and writes the ones about the model (details, evaluation, versions); the
training data, its languages and licence terms (`ser.data.licences`), and the uses
and limitations they imply follow the corpora that preprocess.json lists
(`ser.serving.card_corpora`).

    write_model_card(Path("reports/model_card.md"), metrics, params.model_dump(mode="json", by_alias=True),
                     preprocess, data_version=hashes["data/raw"], model_version=tag.version, commit=commit)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ser.data.licences import and_list, licence_terms, trains
from ser.features import feature_kind
from ser.io import atomic_path
from ser.serving.card_corpora import (
    bullets,
    corpora_of,
    data_section,
    intended_use,
    language_names,
    limitations,
    out_of_scope,
)


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def details_section(params: dict, preprocess: dict) -> str:
    """Architecture, input features, classes, parameter count, training summary."""
    m, f = params.get("model") or {}, preprocess.get("features") or params.get("features") or {}
    training, train, aug = preprocess.get("training") or {}, params.get("train") or {}, params.get("augment") or {}
    copies = aug.get("copies") or 0
    kinds = ["noise", "pitch", "speed"] + [k for k in ("crop", "room", "telephone") if (aug.get(k) or {}).get("rate")]
    augmented = [f"{copies} augmented cop{'y' if copies == 1 else 'ies'} per training clip ({', '.join(kinds)})"]
    augmented = augmented if copies else []
    augmented += ["SpecAugment"] if (aug.get("specaugment") or {}).get("rate") else []
    fitted_on = "training and validation windows (train.refit)" if training.get("refit") else "training windows"
    rows = [
        ("Task", "speech emotion recognition: one emotion per clip (single-label classification)"),
        (
            "Architecture",
            f"CNN-LSTM (Keras): Conv1D blocks over time with filters {m.get('filters')}, kernel "
            f"{m.get('kernel_size')}, max-pool {m.get('pool_size')}; LSTMs {m.get('lstm_units')}; "
            f"dense {m.get('dense_units')}; dropout {m.get('dropout')}; softmax"
            + stats_head_note(training.get("stats_head")),
        ),
        (
            "Input",
            feature_kind(f.get("kind", "logmel")).describe(f)
            + ("; each frame centred and scaled over its channels" if f.get("frame_norm") else "")
            + f"; shape {preprocess.get('shape')}, normalised with training-split statistics; longer audio "
            "is scored per window",
        ),
        ("Classes", ", ".join(preprocess.get("classes") or [])),
        ("Parameters", f"{training['params']:,}" if "params" in training else "n/a"),
        (
            "Training",
            f"{training.get('epochs_run', 'n/a')} epochs ({kept_weights(train, training)}) on "
            f"{training.get('train_clips', 'n/a')} {fitted_on}, batch {train.get('batch_size')}, "
            f"{'AdamW' if train.get('weight_decay') else 'Adam'} lr {train.get('learning_rate')}"
            + "".join(f", {a}" for a in augmented),
        ),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def stats_head_note(head: dict | None) -> str:
    """The Architecture cell's words for `model.stats_head` (nothing without one)."""
    if not head:
        return ""
    refit = "; then refitted with that C on the training and validation splits" if head.get("refit_rows") else ""
    return (
        f"; its probabilities averaged (1/2 each) with a linear head on each input channel's mean and std over "
        f"the window (logistic regression, C {head['C']:g} chosen on the validation split, validation UAR "
        f"{pct(head['val_uar'])}{refit})"
    )


def kept_weights(train: dict, training: dict) -> str:
    """Which weights the model kept, per `train.schedule` (cards of models from before it say plateau's)."""
    if train.get("schedule") == "cosine":
        n = min(train.get("average_last") or 0, train.get("epochs") or 0)
        return "cosine learning-rate decay; " + (f"mean of the last {n} epochs' weights" if n else "last weights")
    return f"best {training.get('best_epoch', 'n/a')} by validation loss, early stopping"


def evaluation_section(metrics: dict, params: dict, corpora: list[dict] | None = None) -> str:
    """Protocol and the metrics tables (pooled, per test corpus when there are several, per class)."""
    split = params.get("split") or {}
    if split.get("method", "speaker") == "speaker":
        test, val = (split.get(f"{s}_speakers", split.get(f"{s}_actors")) for s in ("test", "val"))
        each = " of each corpus with enough speakers" if len(corpora or []) > 1 else ""
        protocol = (
            f"Speaker-independent split: whole speakers are held out, {test} for test and {val} for validation{each} "
            f"(gender-balanced, seed {split.get('seed')}); no test speaker was heard in training."
        )
    else:
        protocol = (
            "Random clip split (the original article's protocol): test speakers were also heard in "
            "training, so the scores overstate performance on new voices."
        )
    held_out = [str(c.get("name")) for c in corpora or [] if not trains(c)]
    protocol += (
        f" Test-only corpora (a cross-corpus test: none of their speakers or clips were heard in training): "
        f"{and_list(held_out)}."
        if held_out
        else ""
    )
    names = {"accuracy": "accuracy", "uar": "UAR", "macro_f1": "macro-F1", "min_class_recall": "worst class recall"}
    passed = metrics.get("gates_passed")
    protocol += "" if passed is None else f" The evaluate stage's quality gates {'passed' if passed else 'FAILED'}."
    summary = "\n".join(f"| {name} | {pct(metrics[key])} |" for key, name in names.items() if key in metrics)
    head = (
        f"{protocol} Test clips: {metrics.get('n_test', 'n/a')}. UAR = unweighted average recall "
        "(mean of per-class recalls, robust to class imbalance).\n\n"
        f"| metric | value |\n|---|---|\n{summary}"
    )
    per_class = metrics.get("per_class") or {}
    rows = "\n".join(
        f"| {c} | {pct(v.get('precision'))} | {pct(v.get('recall'))} | {pct(v.get('f1'))} | {v.get('support', 'n/a')} |"
        for c, v in per_class.items()
    )
    table = f"\n\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n{rows}" if rows else ""
    return head + per_corpus_table(metrics.get("per_corpus") or {}) + enrolment_note(metrics.get("enrolment")) + table


def per_corpus_table(per_corpus: dict) -> str:
    """The scores on each test corpus (nothing for one corpus: the pooled table says it all)."""
    if len(per_corpus) < 2:
        return ""
    rows = "\n".join(
        f"| `{name}` | {pct(m.get('accuracy'))} | {pct(m.get('uar'))} | {pct(m.get('macro_f1'))} | {pct(m.get('ece'))} "
        f"| {m.get('n_test', 'n/a')} | {', '.join(m.get('classes_in_corpus') or []) or 'n/a'} |"
        for name, m in per_corpus.items()
    )
    return (
        "\n\nPer test corpus (UAR and macro-F1 over the classes that corpus has; ECE = expected calibration error, "
        "0 is perfect):\n\n| corpus | accuracy | UAR | macro-F1 | ECE | n | classes |\n|---|---|---|---|---|---|---|\n"
        + rows
    )


def enrolment_note(enrolment: dict | None) -> str:
    """The card's words for the enrolment-mode scores (nothing without an enrolment head)."""
    if not enrolment:
        return ""
    return (
        f"\n\nEnrolment mode (`/predict_speaker`, several clips of one speaker scored together; "
        f"{enrolment['reference_clips']} random reference clips per test speaker, mean of {enrolment['draws']} draws): "
        f"accuracy {pct(enrolment['accuracy'])}, UAR {pct(enrolment['uar'])}, macro-F1 {pct(enrolment['macro_f1'])}. "
        "The single-clip scores above are what `/predict` gives."
    )


def model_card(
    metrics: dict,
    params: dict,
    preprocess: dict,
    data_version: str | None,
    model_version: str | None,
    commit: str | None,
    *,
    date: str | None = None,
    name: str = "ser_emotion",
) -> str:
    """The model card as markdown.

    Args:
        metrics: reports/metrics.json (accuracy, uar, macro_f1, min_class_recall, n_test, per_class, per_corpus).
        params: the whole params.yaml as a dict (`params.model_dump(mode="json", by_alias=True)`).
        preprocess: the model's preprocess.json (classes, features, shape, training summary, corpora; without
            `corpora`, params.yaml's data sources stand in).
        data_version: DVC md5 of the raw audio (`data/raw` in dvc.lock).
        model_version: the model-store version (e.g. the BentoML tag's version).
        commit: git commit of the code.
        date: ISO date of the card; default today (UTC).
        name: model name shown in the title.
    """
    corpora = corpora_of(params, preprocess)
    terms, training = licence_terms(corpora), [c for c in corpora if trains(c)]
    languages = language_names(training)
    synthetic = any(c.get("kind") == "synthetic" for c in training)
    speech = f"{and_list(languages, 'or')} speech".strip()
    warning = "\n\n> **Smoke-test model trained on synthetic audio: not for real use.**" if synthetic else ""
    versions = [
        ("Model", f"`{name}:{model_version or 'unversioned'}`"),
        ("Data (DVC md5 of the raw audio)", f"`{data_version or 'unknown'}`"),
        ("Code (git commit)", f"`{commit or 'unknown'}`"),
        ("Card generated", date or datetime.now(UTC).date().isoformat()),
    ]
    return f"""# Model card: {name}{warning}

Predicts the emotion portrayed in a short clip of {speech}, one of: {", ".join(preprocess.get("classes") or [])}.

## Model details

{details_section(params, preprocess)}

## Intended use

{bullets(intended_use(languages))}

### Out of scope

{bullets(out_of_scope(languages, terms))}

## Training data

{data_section(corpora, terms)}

## Evaluation

{evaluation_section(metrics, params, corpora)}

## Limitations and ethical considerations

{bullets(limitations(corpora, params))}

## Versions

| | |
|---|---|
{chr(10).join(f"| {k} | {v} |" for k, v in versions)}
"""


def write_model_card(
    path: Path,
    metrics: dict,
    params: dict,
    preprocess: dict,
    data_version: str | None,
    model_version: str | None,
    commit: str | None,
    **kwargs,
) -> Path:
    """Write `model_card(...)` to `path` atomically (kwargs: date, name) and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(model_card(metrics, params, preprocess, data_version, model_version, commit, **kwargs))
    return path
