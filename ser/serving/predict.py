"""`ser predict`: emotion of audio files from a local model folder or a running service.

Local predictions go through `ser.serving.predictor.Predictor`, the service's own windowing,
features and model call, so a file gets the same answer here as over HTTP. A long file
gets one prediction per window (a timeline) plus their mean.

    ser predict clip.wav long.flac                      # models/ (the train stage output)
    ser predict clip.wav --url http://127.0.0.1:3000    # a running `ser serve`
"""

from __future__ import annotations

from pathlib import Path

from ser.audio import load_audio


class PredictError(ValueError):
    """A file could not be scored (named in the message)."""


def predict_local(paths: list[Path], model_dir: Path, hop_s: float = 1.75) -> list[dict]:
    """Score files with the model in `model_dir` (model.keras + preprocess.json)."""
    from ser.serving.predictor import Predictor

    if not (model_dir / "model.keras").is_file():
        raise PredictError(f"{model_dir}: no model.keras; run `dvc repro train` or pass --model-dir")
    predictor = Predictor(model_dir, hop_s=hop_s, max_batch=8, xla=False)
    results = []
    for path in paths:
        wave = load_audio(path, predictor.params.sample_rate)
        feats, starts = predictor.featurize(wave)
        duration = wave.shape[0] / predictor.params.sample_rate
        results.append(
            {
                "file": str(path),
                "duration_s": round(duration, 3),
                **predictor.summarise(predictor.infer(feats), starts, duration),
            }
        )
    return results


def predict_remote(paths: list[Path], url: str, timeout: float = 60.0) -> list[dict]:
    """Score files by uploading each to `<url>/predict` of a running EmotionService."""
    import requests

    results = []
    for path in paths:
        try:
            with path.open("rb") as f:
                reply = requests.post(f"{url.rstrip('/')}/predict", files={"audio": (path.name, f)}, timeout=timeout)
        except OSError as err:  # unreadable file, refused connection, timeout
            raise PredictError(f"{path}: {err}") from None
        if reply.status_code != 200:
            raise PredictError(f"{path}: the service answered {reply.status_code}: {reply.text.strip()[:300]}")
        results.append({"file": str(path), **reply.json()})
    return results


def render(results: list[dict]) -> None:
    """Print a table per file: top emotion and every probability; a timeline for long files."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for result in results:
        probs = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
        table = Table(title=f"{result['file']}: {result['label']}", title_justify="left")
        table.add_column("emotion")
        table.add_column("probability", justify="right")
        table.add_column("")
        for name, p in probs:
            table.add_row(name, f"{p:.3f}", "█" * round(p * 30))
        console.print(table)
        if len(result.get("windows", [])) > 1:
            timeline = Table(title="per window", title_justify="left")
            for col in ("start s", "end s", "emotion", "probability"):
                timeline.add_column(col)
            for w in result["windows"]:
                timeline.add_row(
                    f"{w['start_s']:.2f}", f"{w['end_s']:.2f}", w["label"], f"{w['probabilities'][w['label']]:.3f}"
                )
            console.print(timeline)
