"""Model card: a markdown description of a packaged model, written at packaging time.

Built only from what packaging already holds (the metrics of reports/metrics.json,
the whole params.yaml, the model's preprocess.json and the version identifiers),
so the card always describes the exact model saved to the store. Sections follow
Mitchell et al., "Model Cards for Model Reporting" (2019): details, intended use,
training data, evaluation, limitations and ethics, versions.

    write_model_card(Path("reports/model_card.md"), metrics, params.model_dump(mode="json", by_alias=True),
                     preprocess, data_version=hashes["data/raw"], model_version=tag.version, commit=commit)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ser.features import feature_kind
from ser.io import atomic_path

RAVDESS = (
    "RAVDESS speech (Livingstone & Russo, 2018, doi:10.5281/zenodo.1188976): acted North-American English "
    "speech from 24 professional actors (12 female, 12 male), each saying two fixed, lexically neutral "
    'statements ("Kids are talking by the door", "Dogs are sitting by the door") in neutral, calm, happy, '
    "sad, angry, fearful, disgust and surprised voices, at normal and strong intensity (neutral: normal only)."
)
LICENCE = (
    "RAVDESS is licensed CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike). A model trained on it "
    "inherits these terms: no commercial use, and derived work must be shared under the same licence."
)
SYNTHETIC = (
    "A **synthetic** corpus (`ser.data.synth`: source-filter speech-like audio in RAVDESS layout whose prosody "
    "depends on the emotion) generated for smoke tests and demos. It is not speech; a model trained on it "
    "says nothing about real emotional speech and **must not be used on real audio**."
)
INTENDED = [
    "Research, teaching and demos of speech emotion recognition on short (a few seconds), clean clips of "
    "a single English speaker.",
    "Aggregate analysis where an error on any one clip carries no consequence for a person.",
]
OUT_OF_SCOPE = [
    "High-stakes decisions about people: hiring, education, credit, insurance, policing, border control, "
    "lie or threat detection.",
    "Clinical or health use (diagnosis, screening, monitoring of mood or mental health).",
    "Surveillance, or analysing anyone who has not consented to having their voice analysed.",
    "Commercial use (the training data's licence forbids it for RAVDESS-trained models).",
    "Spontaneous, conversational, noisy, far-field, multi-speaker or non-English speech without re-validation.",
]
LIMITATIONS = [
    "**Acted, not spontaneous emotion.** Actors portray exaggerated, prototypical emotions; real emotion is "
    "subtler, mixed and context-dependent, and accuracy on natural speech is expected to be much lower.",
    "**Cultural and language bias.** One accent (North-American English), one age range of professional "
    "actors and two sentences; emotional expression differs across cultures, languages, ages and speaking "
    "styles, and the model has seen none of that variation.",
    "**Small data.** RAVDESS speech is 1,440 clips from 24 voices: per-class test scores rest on few clips and few "
    "speakers and have wide confidence intervals.",
    "**A label is not a feeling.** The output is the emotion the actor was asked to portray as heard in the "
    "voice, not the inner state of a speaker; it must not be used to infer intent, honesty or health.",
    "**Consent and privacy.** Voice is personal data (biometric in many jurisdictions); analyse only audio "
    "whose speakers agreed to it, and do not keep it longer than needed.",
    "**Not for high-stakes decisions and no clinical use**, whatever the scores above.",
]


def pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal, or n/a."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def bullets(items: list[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {item}" for item in items)


def is_synthetic(params: dict) -> bool:
    """Whether params.yaml trained on the synthetic corpus."""
    return str((params.get("data") or {}).get("source", "synthetic")) == "synthetic"


def data_section(params: dict) -> str:
    """Training data: source, licence, classes used."""
    source = str((params.get("data") or {}).get("source", "synthetic"))
    if is_synthetic(params):
        return f"Source: `synthetic`. {SYNTHETIC}"
    where = "`ravdess` (downloaded from Zenodo)" if source == "ravdess" else f"RAVDESS-layout audio in `{source}`"
    return f"Source: {where}. {RAVDESS}\n\n**Licence.** {LICENCE}"


def details_section(params: dict, preprocess: dict) -> str:
    """Architecture, input features, classes, parameter count, training summary."""
    m, f = params.get("model") or {}, preprocess.get("features") or params.get("features") or {}
    training, train, aug = preprocess.get("training") or {}, params.get("train") or {}, params.get("augment") or {}
    copies = aug.get("copies") or 0
    augmented = [f"{copies} augmented cop{'y' if copies == 1 else 'ies'} per training clip (noise, pitch, speed)"]
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


def evaluation_section(metrics: dict, params: dict) -> str:
    """Protocol and the metrics tables."""
    split = params.get("split") or {}
    if split.get("method", "speaker") == "speaker":
        protocol = (
            f"Speaker-independent split: whole actors are held out, {split.get('test_actors')} for test "
            f"and {split.get('val_actors')} for validation (gender-balanced, seed {split.get('seed')}); "
            "no test speaker was heard in training."
        )
    else:
        protocol = (
            "Random clip split (the original article's protocol): test speakers were also heard in "
            "training, so the scores overstate performance on new voices."
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
    return head + enrolment_note(metrics.get("enrolment")) + table


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
        metrics: reports/metrics.json (accuracy, uar, macro_f1, min_class_recall, n_test, per_class).
        params: the whole params.yaml as a dict (`params.model_dump(mode="json", by_alias=True)`).
        preprocess: the model's preprocess.json (classes, features, shape, training summary).
        data_version: DVC md5 of the raw audio (`data/raw` in dvc.lock).
        model_version: the model-store version (e.g. the BentoML tag's version).
        commit: git commit of the code.
        date: ISO date of the card; default today (UTC).
        name: model name shown in the title.
    """
    synthetic = is_synthetic(params)
    warning = "\n\n> **Smoke-test model trained on synthetic audio: not for real use.**" if synthetic else ""
    versions = [
        ("Model", f"`{name}:{model_version or 'unversioned'}`"),
        ("Data (DVC md5 of the raw audio)", f"`{data_version or 'unknown'}`"),
        ("Code (git commit)", f"`{commit or 'unknown'}`"),
        ("Card generated", date or datetime.now(UTC).date().isoformat()),
    ]
    return f"""# Model card: {name}{warning}

Predicts the emotion portrayed in a short clip of English speech, one of: {", ".join(preprocess.get("classes") or [])}.

## Model details

{details_section(params, preprocess)}

## Intended use

{bullets(INTENDED)}

### Out of scope

{bullets(OUT_OF_SCOPE)}

## Training data

{data_section(params)}

## Evaluation

{evaluation_section(metrics, params)}

## Limitations and ethical considerations

{bullets(LIMITATIONS)}

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
