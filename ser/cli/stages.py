"""The pipeline's stage commands, one per `dvc.yaml` stage: what DVC and the Prefect flow run.

Paths are always passed in (dvc.yaml names them once).

    ser ingest --params params.yaml --out data/raw --manifest data/manifest.csv
    ser validate raw --help
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ser.cli.common import ParamsOpt, app, stage


@app.command()
@stage
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder to fill with the corpus audio.")] = Path("data/raw"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV to write.")] = Path("data/manifest.csv"),
    corpora: Annotated[Path, typer.Option(help="Corpora JSON to write (licence, counts).")] = Path("data/corpora.json"),
    download_dir: Annotated[Path, typer.Option(help="Cache for downloaded corpora.")] = Path("data/download"),
) -> None:
    """Put every corpus of data.sources under data/ and write one clip manifest."""
    from ser.config import load_params
    from ser.data.ingest import ingest as run

    run(load_params(params).data, out, manifest, download_dir, workers=os.cpu_count() or 2, corpora_path=corpora)


@app.command()
@stage
def featurize(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV of the clips.")] = Path("data/manifest.csv"),
    audio_dir: Annotated[Path, typer.Option(help="Folder the manifest paths are relative to.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the feature arrays.")] = Path("data/features"),
    corpora: Annotated[Path | None, typer.Option(help="Corpora JSON written by ingest.")] = Path("data/corpora.json"),
) -> None:
    """Split by speaker, augment the training split, and compute the features."""
    from ser.config import load_params
    from ser.data.featurize import featurize as run

    run(load_params(params), manifest, audio_dir, out, corpora_path=corpora)


@app.command()
@stage
def train(
    params: ParamsOpt = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Folder written by featurize.")] = Path("data/features"),
    model_dir: Annotated[Path, typer.Option(help="Folder for model.keras and preprocess.json.")] = Path("models"),
    history: Annotated[Path, typer.Option(help="Per-epoch history CSV.")] = Path("reports/train/history.csv"),
) -> None:
    """Train the CNN-LSTM (GPU when present)."""
    from ser.config import load_params
    from ser.training.train import train as run

    run(load_params(params), features, model_dir, history)


@app.command()
@stage
def export(
    model_dir: Annotated[Path, typer.Option(help="Folder written by train.")] = Path("models"),
    features: Annotated[Path, typer.Option(help="Folder written by featurize (its split).")] = Path("data/features"),
    manifest: Annotated[Path, typer.Option(help="Manifest the features came from.")] = Path(
        "data/validated/manifest.csv"
    ),
    audio_dir: Annotated[Path, typer.Option(help="Folder the manifest paths are relative to.")] = Path("data/raw"),
) -> None:
    """Export the model to model.onnx + frontend.npz (what serving runs), checked against Keras on the validation
    windows."""
    from ser.serving.export import export_model, validation_windows

    check = export_model(model_dir, *validation_windows(features, manifest, audio_dir))
    typer.echo(f"exported {model_dir}/model.onnx: {check['windows']} windows, max |dp| {check['max_abs_diff']:.1e}")


def parse_map(items: list[str]) -> dict[str, str | None]:
    """`--map OWN=OURS` options as a mapping (an empty OURS leaves OWN's clips out), checked against our names."""
    from ser.labels import EMOTIONS

    mapping: dict[str, str | None] = {}
    for item in items:
        own, sep, ours = item.partition("=")
        if not sep or not own or (ours and ours not in EMOTIONS):
            raise typer.BadParameter(
                f"{item!r}: expected OWN=OURS with OURS one of {list(EMOTIONS)} or empty", param_hint="--map"
            )
        mapping[own] = ours or None
    return mapping


def print_metrics(m: dict, title: str) -> None:
    """The metrics table `evaluate` prints: overall scores, then per-class recall and support."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c, v in m["per_class"].items():
        table.add_row(c, *(f"{v[k]:.3f}" for k in ("precision", "recall", "f1")), str(v["support"]))
    Console(width=100).print(table)
    typer.echo(f"accuracy {m['accuracy']:.3f}  UAR {m['uar']:.3f}  macro-F1 {m['macro_f1']:.3f}  (n = {m['n_test']})")


@app.command()
@stage
def evaluate(
    params: ParamsOpt = Path("params.yaml"),
    model_dir: Annotated[Path, typer.Option(help="Folder written by train.")] = Path("models"),
    features: Annotated[Path, typer.Option(help="Folder written by featurize.")] = Path("data/features"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("reports/metrics.json"),
    predictions: Annotated[Path, typer.Option(help="actual/predicted CSV.")] = Path("reports/predictions.csv"),
    confusion_png: Annotated[Path, typer.Option(help="Confusion matrix PNG.")] = Path("reports/confusion.png"),
    corpus: Annotated[
        Path | None,
        typer.Option(help="Cross-corpus: a folder of audio to score instead of the test split (needs --labels)."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Cross-corpus: a labels table (path, emotion[, speaker...] header) or a TSV path<TAB>emotion."
        ),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", metavar="OWN=OURS", help="Cross-corpus: the corpus's label OWN is our OURS (empty: left out)."
        ),
    ] = None,
    calibrate: Annotated[
        int,
        typer.Option(help="Cross-corpus: first calibrate on N random clips of the corpus (labels unused); 0 = off."),
    ] = 0,
    calibrate_seed: Annotated[int, typer.Option(help="Cross-corpus: the draw of --calibrate's clips.")] = 0,
    classes: Annotated[
        str | None,
        typer.Option(help="Cross-corpus: `own` (the corpus's classes) or a comma-separated subset to answer."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Cross-corpus: a saved calibration profile to apply.")] = None,
) -> None:
    """Score the model on the test split and apply the quality gates, or (--corpus/--labels) on another corpus."""
    from ser.config import load_params

    if (corpus is None) != (labels is None):
        raise typer.BadParameter("--corpus and --labels go together", param_hint="--corpus/--labels")
    if corpus is not None:
        from ser.serving.crosscorpus import evaluate_corpus

        assert labels is not None  # --corpus and --labels go together (checked above)
        loaded = load_params(params)
        c = loaded.calibrate
        m = evaluate_corpus(
            model_dir,
            corpus,
            labels,
            metrics,
            predictions,
            confusion_png,
            hop_s=loaded.serve.window_hop_s,
            emotions=parse_map(map_ or []),
            calibrate=calibrate,
            calibrate_seed=calibrate_seed,
            shrink=c.shrink,
            scale=c.scale,
            head_share=c.head_share,
            classes=classes,
            profile=profile,
        )
        print_metrics(m, f"{corpus} ({len(m['classes_in_corpus'])} classes)")
        return
    from ser.training.evaluate import evaluate as run

    loaded = load_params(params)
    ev = loaded.evaluate
    m = run(model_dir, features, metrics, predictions, confusion_png, ev.gates, loaded.enrolment, ev.corpus_gates)
    print_metrics(m, "test split")
    for name, c in m.get("per_corpus", {}).items():
        typer.echo(
            f"  {name}: accuracy {c['accuracy']:.3f}  UAR {c['uar']:.3f}  macro-F1 {c['macro_f1']:.3f}  "
            f"(n = {c['n_test']}, {len(c['classes_in_corpus'])} classes)"
        )
    if "enrolment" in m:
        e = m["enrolment"]
        typer.echo(
            f"enrolment mode ({e['reference_clips']} reference clips per speaker, {e['draws']} draws): "
            f"accuracy {e['accuracy']:.3f}  UAR {e['uar']:.3f}  macro-F1 {e['macro_f1']:.3f}"
        )


@app.command()
@stage
def package(
    params: ParamsOpt = Path("params.yaml"),
    model_dir: Annotated[Path, typer.Option(help="Folder written by train.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON written by evaluate.")] = Path("reports/metrics.json"),
    out: Annotated[Path, typer.Option(help="Package summary JSON to write.")] = Path("reports/package.json"),
    card: Annotated[Path, typer.Option(help="Model card (markdown) to write.")] = Path("reports/model_card.md"),
    lock: Annotated[Path, typer.Option(help="dvc.lock to read data/model hashes from.")] = Path("dvc.lock"),
    gate: Annotated[Path, typer.Option(help="Champion/challenger verdict (optional).")] = Path("reports/gate.json"),
) -> None:
    """Save the accepted model (gates passed) to the BentoML model store, with its model card."""
    from ser.config import load_params
    from ser.serving.package import package as run

    summary = run(load_params(params), model_dir, metrics, out, lock_path=lock, gate_path=gate, card_path=card)
    typer.echo(f"saved {summary['tag']}")


@app.command()
@stage
def report(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV of the clips.")] = Path("data/manifest.csv"),
    audio_dir: Annotated[Path, typer.Option(help="Folder the manifest paths are relative to.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder to replace with index.html and the PNGs.")] = Path("reports/eda"),
    speaker: Annotated[
        str | None,
        typer.Option(
            help="Speaker of the per-emotion figures, as in the manifest (e.g. ravdess:01) "
            "[default: the first, sorted, of those with the most emotions]."
        ),
    ] = None,
) -> None:
    """Write the corpus report: HTML page of EDA figures (class balance per corpus and speaker, examples,
    durations, loudness, pitch, speech against the model window)."""
    from ser.config import load_params
    from ser.data.eda import eda_report

    result = eda_report(manifest, audio_dir, out, load_params(params), speaker=speaker)
    typer.echo(f"wrote {result['index']} ({len(result['figures'])} figures, example speaker {result['speaker']})")


validate_app = typer.Typer(
    help="The data contract (Great Expectations): blocking checks before training.", no_args_is_help=True
)
app.add_typer(validate_app, name="validate")


@validate_app.command("raw")
@stage
def validate_raw(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV written by ingest.")] = Path("data/manifest.csv"),
    accepted: Annotated[Path, typer.Option(help="Accepted manifest to write; featurize reads it.")] = Path(
        "data/validated/manifest.csv"
    ),
    quarantine: Annotated[Path, typer.Option(help="Quarantine CSV to write (clips left out).")] = Path(
        "reports/validate/quarantine.csv"
    ),
    result: Annotated[Path, typer.Option(help="JSON result (dvc metrics).")] = Path("reports/validate/raw.json"),
    report: Annotated[Path, typer.Option(help="HTML report.")] = Path("reports/validate/raw.html"),
    corpora: Annotated[Path | None, typer.Option(help="Corpora JSON written by ingest.")] = Path("data/corpora.json"),
) -> None:
    """Check the raw corpus against the data contract; stop on a broken clip, label or split."""
    from ser.config import load_params
    from ser.data.validate import validate_raw as run

    r = run(load_params(params), manifest, accepted, quarantine, result, report, corpora_path=corpora)
    typer.echo(
        f"raw contract passed: {r['accepted']} of {r['clips']} clips accepted, {r['quarantined']} "
        f"quarantined ({quarantine}); report {report}"
    )


@validate_app.command("features")
@stage
def validate_features(
    params: ParamsOpt = Path("params.yaml"),
    features: Annotated[Path, typer.Option(help="Folder written by featurize.")] = Path("data/features"),
    result: Annotated[Path, typer.Option(help="JSON result (dvc metrics).")] = Path("reports/validate/features.json"),
    report: Annotated[Path, typer.Option(help="HTML report.")] = Path("reports/validate/features.html"),
) -> None:
    """Check the feature arrays and statistics against the data contract."""
    from ser.config import load_params
    from ser.data.validate import validate_features as run

    r = run(load_params(params), features, result, report)
    typer.echo(f"feature contract passed: {r['windows']} windows of shape {r['shape']}; report {report}")
