"""The `ser` tools beside the stages: predict, serve, get or make corpora, run the retrain flow.

ser predict clip.wav
ser data synth --out /tmp/corpus
ser flow run --help
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ser.cli.common import app, data_app, stage


@app.command()
@stage
def predict(
    files: Annotated[
        list[Path], typer.Argument(help="Audio files (wav, flac, ogg, mp3).", exists=True, dir_okay=False)
    ],
    model_dir: Annotated[
        Path, typer.Option(help="Local model folder (model.onnx + frontend.npz + preprocess.json).")
    ] = Path("models"),
    url: Annotated[str | None, typer.Option(help="A running service instead, e.g. http://127.0.0.1:3000.")] = None,
    hop: Annotated[float, typer.Option(help="Seconds between windows of a long file.")] = 1.75,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    speaker: Annotated[
        bool,
        typer.Option(help="The files are one speaker's (4 or more): score them together in enrolment mode."),
    ] = False,
    profile: Annotated[
        str | None, typer.Option(help="A calibration profile of the model (`ser calibrate`) to apply.")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Answer only these classes (comma-separated), renormalised.")
    ] = None,
) -> None:
    """Predict the emotion of audio files: top emotion, probabilities, per-window timeline for long files.

    A file that cannot be scored gets its error (and code) among the results; the exit code is then 2.
    """
    import json

    from ser.serving.predict import failed, predict_local, predict_remote, render

    if url:
        results = predict_remote(files, url, speaker=speaker, profile=profile, classes=classes)
    else:
        results = predict_local(files, model_dir, hop, speaker=speaker, profile=profile, classes=classes)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        render(results)
    if failed(results):  # every good file's answer is printed first; the bad ones make the exit code
        raise typer.Exit(2)


@app.command()
@stage
def calibrate(
    folder: Annotated[Path, typer.Argument(help="A folder of the deployment's recordings (labels never read).")],
    name: Annotated[str, typer.Option(help="The profile's name (letters, digits, _ . -).")],
    model_dir: Annotated[Path, typer.Option(help="Model folder; the profile goes to its profiles/.")] = Path("models"),
    params: Annotated[Path, typer.Option(help="params.yaml (its calibrate and validate sections).")] = Path(
        "params.yaml"
    ),
    clips: Annotated[int | None, typer.Option(help="Calibrate on this many clips drawn at random.")] = None,
    seed: Annotated[int, typer.Option(help="The draw of --clips.")] = 0,
    classes: Annotated[
        str | None, typer.Option(help="The profile's default classes to answer (comma-separated).")
    ] = None,
) -> None:
    """Estimate a domain-calibration profile from unlabelled recordings; use it with --profile / ?profile=."""
    from ser.config import load_params
    from ser.serving.calibrate import calibrate as run

    loaded = load_params(params)
    wanted = classes.split(",") if classes else None
    path, profile = run(
        model_dir,
        folder,
        name,
        loaded.calibrate,
        min_rms_dbfs=loaded.contract.min_rms_dbfs,
        clips=clips,
        seed=seed,
        classes=wanted,
        hop_s=loaded.serve.window_hop_s,
    )
    info = profile.info
    typer.echo(
        f"profile {name!r}: {info['clips']} clips ({info['speakers'] or 'unknown'} speakers), mean moved "
        f"{info['weight']:.0%} of the way to theirs; saved to {path}"
    )
    for kind in ("plain", "calibrated"):
        typer.echo(f"  {kind} answers on them: {info['answers'][kind]}")
    for warning in info["warnings"]:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"  use it: ser predict --profile {name}; `ser package` (or `dvc repro -f -s package`) carries it into")
    typer.echo("  the BentoML model for `ser serve` (?profile=)")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    model_tag: Annotated[str, typer.Option(help="Model in the BentoML store.")] = "ser_emotion:latest",
    batching: Annotated[str, typer.Option(help="inprocess (fair batching) | off (each request alone)")] = "inprocess",
) -> None:
    """Serve the packaged model over HTTP (bentoml serve ser.serving.service:EmotionService)."""
    os.environ.update(SER_MODEL_TAG=model_tag, SER_BATCHING=batching)
    exe = str(Path(sys.executable).parent / "bentoml")
    os.execv(exe, [exe, "serve", "ser.serving.service:EmotionService", "--host", host, "--port", str(port)])


@data_app.command("synth")
@stage
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write the corpus into.")],
    actors: Annotated[int, typer.Option(help="Number of speakers.")] = 12,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    layout: Annotated[
        str, typer.Option(help="ravdess: Actor_XX/ folders | labelled: audio/ plus labels.csv in its own names.")
    ] = "ravdess",
) -> None:
    """Generate a synthetic corpus: RAVDESS layout, or a labelled folder as a user's own recordings come."""
    if layout == "labelled":
        from ser.data.synth_labelled import LABELLED_NAMES, generate_labelled_corpus

        table = generate_labelled_corpus(out, n_speakers=actors, seed=seed)
        typer.echo(f"wrote {table} and its audio; its emotions map onto ours as {LABELLED_NAMES}")
        return
    if layout != "ravdess":
        raise typer.BadParameter(f"expected ravdess or labelled, got {layout!r}", param_hint="--layout")
    from ser.data.synth import generate_corpus

    typer.echo(f"wrote {len(generate_corpus(out, n_actors=actors, seed=seed))} clips under {out}")


@data_app.command("fetch")
@stage
def data_fetch(
    dest: Annotated[Path, typer.Option(help="Download and extraction folder.")] = Path("data/download"),
    corpus: Annotated[
        str, typer.Option(help="ravdess (speech audio from Zenodo) | emodb (download.zip from the corpus site).")
    ] = "ravdess",
) -> None:
    """Download a corpus (resumable, checksum-verified) and print the folder holding its audio."""
    from ser.data.download import FETCHERS

    if corpus not in FETCHERS:
        raise typer.BadParameter(f"{corpus!r} is not one of {', '.join(FETCHERS)}", param_hint="--corpus")
    typer.echo(f"{corpus} audio under {FETCHERS[corpus](dest)}")


flow_app = typer.Typer(
    help="The Prefect retrain flow (flows/retrain.py): one recorded, gated run.", no_args_is_help=True
)
app.add_typer(flow_app, name="flow")

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set-param",
        "-S",
        metavar="KEY=VALUE",
        help="Params override, written into params.yaml first (as `dvc exp run -S`).",
    ),
]
RepoOpt = Annotated[Path, typer.Option(help="Project (git + DVC) to run in.")]
PullOpt = Annotated[bool, typer.Option("--pull", help="`dvc pull` before running (retried).")]
PushOpt = Annotated[bool, typer.Option("--push", help="`dvc push` after an accepted run (retried).")]


def _retrain():
    """flows.retrain (packaged with ser), imported only when a flow command runs: Prefect is slow to import."""
    from flows import retrain

    return retrain


@flow_app.command("run")
def flow_run(
    set_param: SetOpt = None,
    repo: RepoOpt = Path("."),
    pull: PullOpt = False,
    push: PushOpt = False,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
) -> None:
    """Run the retrain flow once (no Prefect server needed); exit 1 when a stage or the gate failed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise typer.Exit(_retrain().run_once(repo, set_param or [], until, pull, push))


@flow_app.command("serve")
def flow_serve(
    set_param: SetOpt = None,
    repo: RepoOpt = Path("."),
    pull: PullOpt = False,
    push: PushOpt = False,
    cron: Annotated[str, typer.Option(help="Schedule (cron).")] = "0 3 * * 1",
    name: Annotated[str, typer.Option(help="Deployment name.")] = "scheduled",
) -> None:
    """Serve the flow on a schedule (needs `prefect server start` and PREFECT_API_URL)."""
    _retrain().serve(cron, name, repo=repo, overrides=set_param or [], pull=pull, push=push)
