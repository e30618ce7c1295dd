"""`ser predict`: emotion of audio files from a local model folder or a running service.

Local predictions run the service's own engine (`ser.serving.predictor`: the exported model.onnx with
onnxruntime, no TensorFlow, librosa or numba import) and checked decoder (`ser.serving.uploads`, with
limits for local files). Every file is decoded before the model loads,
so a run of bad files costs no model load, and one bad file does not cost the others their answers:
it gets an `error` entry and the command exits 2 after printing every result. A long file gets one
prediction per window (a timeline) plus their mean.

    ser predict clip.wav long.flac                      # models/ (the train stage output)
    ser predict clip.wav --url http://127.0.0.1:3000    # a running `ser serve`
    ser predict --speaker a.wav b.wav c.wav d.wav      # one speaker's clips, in enrolment mode
    ser predict clip.wav --profile studio-b --classes neutral,happy,sad,angry   # calibrated, 4 classes
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ser.audio import AudioError

if TYPE_CHECKING:
    from ser.serving.uploads import Clip

# Local files may be long (an hour of 48 kHz stereo) and large; the service's caps are for uploads.
LOCAL_LIMITS = {
    "max_upload_mb": 4096,
    "max_duration_s": 3600,
    "max_samples_per_file": 3600 * 96000,
    "max_samples_per_request": 3600 * 96000,
}


log = logging.getLogger(__name__)


class PredictError(ValueError):
    """A file could not be scored (named in the message)."""


def failed(results: list[dict]) -> list[dict]:
    """The entries of files that could not be scored."""
    return [r for r in results if "error" in r]


def predict_local(
    paths: list[Path],
    model_dir: Path,
    hop_s: float = 1.75,
    speaker: bool = False,
    profile: str | None = None,
    classes: str | None = None,
) -> list[dict]:
    """Score files with the exported model in `model_dir` (model.onnx, frontend.npz, preprocess.json, as the train
    stage leaves them); bad files get `error`.

    `speaker`: the files are one speaker's, scored in enrolment mode as the service's `/predict_speaker` scores them
    (the readable files are the reference). `profile`: a calibration profile of this model (`ser calibrate`);
    `classes`: the classes to answer (comma-separated), renormalised.

    Raises:
        PredictError: no model in `model_dir`; with `speaker`, no enrolment head or too few readable files, or a
            profile too.
        CalibrationError: an unknown profile or class.
    """
    from ser.io import read_json
    from ser.serving.export import ONNX_FILE
    from ser.serving.predictor import Predictor
    from ser.serving.profiles import class_subset, load_profiles, pick_profile
    from ser.serving.uploads import Limits, UploadError, decode_upload

    if not (model_dir / ONNX_FILE).is_file():
        raise PredictError(f"{model_dir}: no {ONNX_FILE}; run `dvc repro train` (or `ser export`) or pass --model-dir")
    preprocess = read_json(model_dir / "preprocess.json")
    rate = int(preprocess["features"]["sample_rate"])
    if speaker and profile:
        raise PredictError("--speaker measures each clip against the speaker's own clips; drop --profile")
    used = pick_profile(load_profiles(model_dir), profile)
    keep = class_subset(preprocess["classes"], classes or (used.classes if used else None))
    limits = Limits.from_serve(LOCAL_LIMITS)
    clips: dict[int, Clip] = {}
    results: list[dict] = [{"file": str(p)} for p in paths]
    for i, path in enumerate(paths):
        try:
            clips[i] = decode_upload(path, rate, limits)
        except (UploadError, AudioError, OSError) as err:
            results[i].update(error=str(err), code=getattr(err, "code", "unreadable"))
    head = enrolment_head(model_dir, len(clips)) if speaker else None
    if not clips:
        return results
    predictor = Predictor(model_dir, hop_s=hop_s, max_batch=8, warm=False)
    featurized = {i: predictor.featurize(clip.wave) for i, clip in clips.items()}
    scored = dict(zip(featurized, predictor.run_scored([f for f, _ in featurized.values()]), strict=True))
    if head is None:
        probs = {i: p for i, (p, _) in scored.items()}
    else:
        from ser.training.enrolment import speaker_probs

        stats = np.concatenate([s for _, s in scored.values()])
        joined = np.concatenate([p for p, _ in scored.values()])
        fused = speaker_probs(head, joined, stats, [len(p) for p, _ in scored.values()])
        probs = dict(zip(featurized, fused, strict=True))
    for i, clip in clips.items():
        wave = clip.wave
        duration = wave.shape[0] / predictor.params.sample_rate
        notes = [*clip.notes, *predictor.window_notes(wave)]
        answered, names = predictor.answer(probs[i], scored[i][1], used, keep)
        summary = predictor.summarise(answered, featurized[i][1], duration, names)
        results[i].update(duration_s=round(duration, 3), **summary, notes=notes)
    return results


def enrolment_head(model_dir: Path, clips: int):
    """The model's enrolment head, checked against the number of readable clips.

    Raises:
        PredictError: the model has none, or `clips` is below its minimum.
    """
    from ser.training.enrolment import FILE, EnrolmentHead

    if not (model_dir / FILE).is_file():
        raise PredictError(f"{model_dir}: no {FILE}; --speaker needs a model trained with enrolment.head true")
    head = EnrolmentHead.load(model_dir / FILE)
    if clips < head.min_clips:
        raise PredictError(
            f"--speaker: {clips} readable file(s); enrolment needs at least {head.min_clips} clips of one speaker"
        )
    return head


def predict_remote(
    paths: list[Path],
    url: str,
    timeout: float = 60.0,
    speaker: bool = False,
    profile: str | None = None,
    classes: str | None = None,
) -> list[dict]:
    """Score files by uploading each to `<url>/predict` of a running EmotionService; bad files get `error`.

    `speaker`: all files in one request to `/predict_speaker` (enrolment mode); a refusal is every file's error.
    `profile`, `classes`: the service's `?profile=` and `?classes=`.
    """
    import requests

    query = {k: v for k, v in (("profile", profile), ("classes", classes)) if v}
    if speaker:
        return predict_speaker_remote(paths, url, timeout, query)
    results = []
    for path in paths:
        try:
            with path.open("rb") as f:
                reply = requests.post(
                    f"{url.rstrip('/')}/predict", files={"audio": (path.name, f)}, params=query, timeout=timeout
                )
        except requests.ConnectionError as err:  # the service is not there: no file can be scored
            raise PredictError(f"cannot reach the service at {url}: {err.__class__.__name__}") from None
        except (OSError, requests.RequestException) as err:  # unreadable file, timeout
            results.append({"file": str(path), "error": str(err), "code": "unreadable"})
            continue
        body, error = _reply(reply)
        results.append({"file": str(path), **(error or body)})
    return results


def _reply(reply, expect: str | None = None) -> tuple[dict, dict | None]:
    """A service reply's JSON body, and its error (`error`, `code`) when it is not a 200 dict (holding `expect`)."""
    try:
        body = reply.json()
    except ValueError:
        body = {"error": reply.text.strip()[:300], "code": f"http_{reply.status_code}"}
    if reply.status_code == 200 and isinstance(body, dict) and (expect is None or expect in body):
        return body, None
    message = body.get("error", str(body)[:300]) if isinstance(body, dict) else str(body)[:300]
    code = body.get("code", f"http_{reply.status_code}") if isinstance(body, dict) else "bad_reply"
    return {}, {"error": f"the service answered {reply.status_code}: {message}", "code": code}


def predict_speaker_remote(paths: list[Path], url: str, timeout: float = 60.0, query: dict | None = None) -> list[dict]:
    """`predict_remote` in enrolment mode: one `/predict_speaker` request holding every file."""
    import requests

    try:
        files = [("audios", (p.name, p.read_bytes())) for p in paths]
        reply = requests.post(f"{url.rstrip('/')}/predict_speaker", files=files, params=query, timeout=timeout)
    except requests.ConnectionError as err:
        raise PredictError(f"cannot reach the service at {url}: {err.__class__.__name__}") from None
    except (OSError, requests.RequestException) as err:
        return [{"file": str(p), "error": str(err), "code": "unreadable"} for p in paths]
    body, error = _reply(reply, expect="clips")
    if error:
        return [{"file": str(p), **error} for p in paths]
    return [{"file": str(p), **clip} for p, clip in zip(paths, body["clips"], strict=True)]


def render(results: list[dict]) -> None:
    """Print a table per file: top emotion and every probability; a timeline for long files; errors in red."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for result in results:
        if "error" in result:
            console.print(f"[red]{result['file']}: {result['error']}[/red]", highlight=False, soft_wrap=True)
            continue
        probs = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
        table = Table(title=f"{result['file']}: {result['label']}", title_justify="left")
        table.add_column("emotion")
        table.add_column("probability", justify="right")
        table.add_column("")
        for name, p in probs:
            table.add_row(name, f"{p:.3f}", "█" * round(p * 30))
        console.print(table)
        for note in result.get("notes", []):
            console.print(f"note: {note}", highlight=False)
        if len(result.get("windows", [])) > 1:
            timeline = Table(title="per window", title_justify="left")
            for col in ("start s", "end s", "emotion", "probability"):
                timeline.add_column(col)
            for w in result["windows"]:
                timeline.add_row(
                    f"{w['start_s']:.2f}", f"{w['end_s']:.2f}", w["label"], f"{w['probabilities'][w['label']]:.3f}"
                )
            console.print(timeline)
