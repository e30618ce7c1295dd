"""The `ser` command: one CLI app over the pipeline stages and data tools.

Each stage command is what `dvc.yaml` runs; paths are always passed in.
Exit codes: 0 ok, 1 a quality gate failed, 2 bad input (params, corpus, audio).

    ser --help
    ser ingest --params params.yaml --out data/raw --manifest data/manifest.csv
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Speech emotion recognition: pipeline stages and tools.", no_args_is_help=True)
data_app = typer.Typer(help="Get or make corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]


def _input_errors() -> tuple[type[Exception], ...]:
    from ser.audio import AudioError
    from ser.config import ParamsError
    from ser.contract import ContractError
    from ser.download import DownloadError
    from ser.eda import EdaError
    from ser.featurize import FeaturizeError
    from ser.ingest import IngestError
    from ser.labels import LabelError
    from ser.predict import PredictError
    from ser.splits import SplitError

    return (AudioError, ParamsError, ContractError, DownloadError, EdaError, FeaturizeError, IngestError, LabelError,
            PredictError, SplitError)  # fmt: skip


def stage(func: Callable) -> Callable:
    """Log to stderr and turn known errors into one clear line and an exit code."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            stream=sys.stderr)  # fmt: skip
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from ser.evaluate import GateError
        from ser.package import PackageError

        try:
            return func(*args, **kwargs)
        except (GateError, PackageError) as err:
            typer.echo(f"error: quality gate failed: {err}", err=True)
            raise typer.Exit(1) from None
        except _input_errors() as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@stage
def ingest(
    params: ParamsOpt = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder to fill with the corpus audio.")] = Path("data/raw"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV to write.")] = Path("data/manifest.csv"),
    download_dir: Annotated[Path, typer.Option(help="Cache for the Zenodo download.")] = Path("data/download"),
) -> None:
    """Put the corpus under data/ and write the clip manifest."""
    from ser.config import load_params
    from ser.ingest import ingest as run

    run(load_params(params).data, out, manifest, download_dir, workers=os.cpu_count() or 2)


@app.command()
@stage
def featurize(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV of the clips.")] = Path("data/manifest.csv"),
    audio_dir: Annotated[Path, typer.Option(help="Folder the manifest paths are relative to.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the feature arrays.")] = Path("data/features"),
) -> None:
    """Split, augment the training split, and compute log-mel features."""
    from ser.config import load_params
    from ser.featurize import featurize as run

    run(load_params(params), manifest, audio_dir, out)


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
    from ser.train import train as run

    run(load_params(params), features, model_dir, history)


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
    corpus: Annotated[Path | None, typer.Option(help="Cross-corpus: a folder of audio to score instead of the "
                                                     "test split (needs --labels).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Cross-corpus: TSV of relative path<TAB>emotion "
                                                     "(RAVDESS vocabulary).")] = None,
) -> None:
    """Score the model on the test split and apply the quality gates, or (--corpus/--labels) on another corpus."""
    from ser.config import load_params

    if (corpus is None) != (labels is None):
        raise typer.BadParameter("--corpus and --labels go together", param_hint="--corpus/--labels")
    if corpus is not None:
        from ser.crosscorpus import evaluate_corpus

        m = evaluate_corpus(model_dir, corpus, labels, metrics, predictions, confusion_png,
                            hop_s=load_params(params).serve.window_hop_s)  # fmt: skip
        print_metrics(m, f"{corpus} ({len(m['classes_in_corpus'])} classes)")
        return
    from ser.evaluate import evaluate as run

    m = run(model_dir, features, metrics, predictions, confusion_png, load_params(params).evaluate.gates)
    print_metrics(m, "test split")


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
    from ser.package import package as run

    summary = run(load_params(params), model_dir, metrics, out, lock_path=lock, gate_path=gate, card_path=card)
    typer.echo(f"saved {summary['tag']}")


@app.command()
@stage
def predict(
    files: Annotated[
        list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3).", exists=True, dir_okay=False)
    ],
    model_dir: Annotated[Path, typer.Option(help="Local model folder (model.keras + preprocess.json).")] = Path(
        "models"),
    url: Annotated[str | None, typer.Option(help="A running service instead, e.g. http://127.0.0.1:3000.")] = None,
    hop: Annotated[float, typer.Option(help="Seconds between windows of a long file.")] = 1.75,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:  # fmt: skip
    """Predict the emotion of audio files: top emotion, probabilities, per-window timeline for long files."""
    import json

    from ser.predict import predict_local, predict_remote, render

    results = predict_remote(files, url) if url else predict_local(files, model_dir, hop)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        render(results)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    model_tag: Annotated[str, typer.Option(help="Model in the BentoML store.")] = "ser_emotion:latest",
    batching: Annotated[str, typer.Option(help="inprocess | bentoml | off")] = "inprocess",
) -> None:
    """Serve the packaged model over HTTP (bentoml serve ser.service:EmotionService)."""
    os.environ.update(SER_MODEL_TAG=model_tag, SER_BATCHING=batching)
    exe = str(Path(sys.executable).parent / "bentoml")
    os.execv(exe, [exe, "serve", "ser.service:EmotionService", "--host", host, "--port", str(port)])


@app.command()
@stage
def report(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV of the clips.")] = Path("data/manifest.csv"),
    audio_dir: Annotated[Path, typer.Option(help="Folder the manifest paths are relative to.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder to replace with index.html and the PNGs.")] = Path("reports/eda"),
    actor: Annotated[
        int | None, typer.Option(help="Actor of the per-emotion figures [default: lowest with every emotion].")
    ] = None,
) -> None:
    """Write the corpus report: HTML page of EDA figures (class balance, examples, durations, loudness, pitch,
    speech against the model window)."""
    from ser.config import load_params
    from ser.eda import eda_report

    result = eda_report(manifest, audio_dir, out, load_params(params), actor=actor)
    typer.echo(f"wrote {result['index']} ({len(result['figures'])} figures, example actor {result['actor']})")


validate_app = typer.Typer(help="The data contract (Great Expectations): blocking checks before training.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(validate_app, name="validate")


@validate_app.command("raw")
@stage
def validate_raw(
    params: ParamsOpt = Path("params.yaml"),
    manifest: Annotated[Path, typer.Option(help="Manifest CSV written by ingest.")] = Path("data/manifest.csv"),
    accepted: Annotated[Path, typer.Option(help="Accepted manifest to write; featurize reads it.")] = Path(
        "data/validated/manifest.csv"),
    quarantine: Annotated[Path, typer.Option(help="Quarantine CSV to write (clips left out).")] = Path(
        "reports/validate/quarantine.csv"),
    result: Annotated[Path, typer.Option(help="JSON result (dvc metrics).")] = Path("reports/validate/raw.json"),
    report: Annotated[Path, typer.Option(help="HTML report.")] = Path("reports/validate/raw.html"),
) -> None:  # fmt: skip
    """Check the raw corpus against the data contract; stop on a broken clip, label or split."""
    from ser.config import load_params
    from ser.validate import validate_raw as run

    r = run(load_params(params), manifest, accepted, quarantine, result, report)
    typer.echo(f"raw contract passed: {r['accepted']} of {r['clips']} clips accepted, {r['quarantined']} "
               f"quarantined ({quarantine}); report {report}")  # fmt: skip


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
    from ser.validate import validate_features as run

    r = run(load_params(params), features, result, report)
    typer.echo(f"feature contract passed: {r['windows']} windows of shape {r['shape']}; report {report}")


@data_app.command("synth")
@stage
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write Actor_XX/ folders into.")],
    actors: Annotated[int, typer.Option(help="Number of actors.")] = 12,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Generate the synthetic RAVDESS-layout corpus."""
    from ser.synth import generate_corpus

    typer.echo(f"wrote {len(generate_corpus(out, n_actors=actors, seed=seed))} clips under {out}")


@data_app.command("fetch")
@stage
def data_fetch(
    dest: Annotated[Path, typer.Option(help="Download and extraction folder.")] = Path("data/download"),
) -> None:
    """Download RAVDESS speech audio from Zenodo (resumable, checksum-verified)."""
    from ser.download import fetch_ravdess

    typer.echo(f"RAVDESS audio under {fetch_ravdess(dest)}")


flow_app = typer.Typer(help="The Prefect retrain flow (flows/retrain.py): one recorded, gated run.",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(flow_app, name="flow")

SetOpt = Annotated[list[str] | None, typer.Option("--set-param", "-S", metavar="KEY=VALUE",
                   help="Params override, written into params.yaml first (as `dvc exp run -S`).")]  # fmt: skip
RepoOpt = Annotated[Path, typer.Option(help="Project (git + DVC) to run in.")]
PullOpt = Annotated[bool, typer.Option("--pull", help="`dvc pull` before running (retried).")]
PushOpt = Annotated[bool, typer.Option("--push", help="`dvc push` after an accepted run (retried).")]


def _retrain(repo: Path):
    """flows.retrain, imported from the project (flows/ sits beside ser/)."""
    root = str(repo.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    from flows import retrain

    return retrain


@flow_app.command("run")
def flow_run(set_param: SetOpt = None, repo: RepoOpt = Path("."), pull: PullOpt = False, push: PushOpt = False,
             until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None) -> None:  # fmt: skip
    """Run the retrain flow once (no Prefect server needed); exit 1 when a stage or the gate failed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise typer.Exit(_retrain(repo).run_once(repo, set_param or [], until, pull, push))


@flow_app.command("serve")
def flow_serve(set_param: SetOpt = None, repo: RepoOpt = Path("."), pull: PullOpt = False, push: PushOpt = False,
               cron: Annotated[str, typer.Option(help="Schedule (cron).")] = "0 3 * * 1",
               name: Annotated[str, typer.Option(help="Deployment name.")] = "scheduled") -> None:  # fmt: skip
    """Serve the flow on a schedule (needs `prefect server start` and PREFECT_API_URL)."""
    _retrain(repo).serve(cron, name, repo=repo, overrides=set_param or [], pull=pull, push=push)


def main() -> None:
    """Entry point for `python -m ser`."""
    app()
