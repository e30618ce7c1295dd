"""`ser calibrate`: a named domain-calibration profile from a folder of a deployment's unlabelled recordings.

The folder's audio files (labels never read; a labels table is ignored) are decoded with the service's checked
decoder, windowed and featurized as the service does (`Predictor`), and the statistics head's standardisation is
re-estimated from their clip statistics (`ser.serving.profiles.estimate`, `calibrate.*` params). Checked first, and
nothing written when any fails: at least `calibrate.min_clips` decodable clips louder than the data contract's
`validate.min_rms_dbfs`, and, where the folder's layout names speakers (RAVDESS `Actor_XX/`, EmoDB names, or one
subfolder per speaker), at least `calibrate.min_speakers` of them: one speaker is what speaker enrolment
(`/predict_speaker`) is for. Reported, not refused: a set whose calibrated answers put more than
`calibrate.one_sided_share` on one class (it may hold mostly one emotion, which calibration would take for the
deployment's neutral). The profile lands in `<model_dir>/profiles/<name>.npz`; `package` copies it into the model.

    ser calibrate recordings/ --name call-centre --model-dir models --clips 30
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np

from ser.config import CalibrateParams
from ser.serving.profiles import CalibrationError, Profile, StatsHead, check_name, estimate, model_digest, restrict

log = logging.getLogger(__name__)


def folder_speaker(rel: str) -> str | None:
    """The speaker a file's place in a folder names: RAVDESS's actor, EmoDB's speaker, else its first subfolder;
    None for a file at the top of a flat folder of other names."""
    from ser.data.clips import ACTOR_DIR, EMODB_NAME

    pure = PurePosixPath(rel)
    actor = ACTOR_DIR.match(pure.parent.name)
    if actor:
        return f"actor {int(actor.group(1))}"
    emodb = EMODB_NAME.match(pure.stem)
    if emodb:
        return f"speaker {emodb.group(1)}"
    return pure.parts[0] if len(pure.parts) > 1 else None


def pick_files(folder: Path, clips: int | None, cfg: CalibrateParams, seed: int) -> list[str]:
    """The audio files to calibrate on: `clips` (or up to `cfg.max_clips`) drawn at random, seeded.

    Raises:
        CalibrationError: no folder, or fewer audio files than `cfg.min_clips`.
    """
    from ser.data.clips import find_audio

    if not folder.is_dir():
        raise CalibrationError(f"{folder}: calibration folder not found")
    files = find_audio(folder)
    want = min(clips or cfg.max_clips, cfg.max_clips)
    if len(files) < cfg.min_clips:
        raise CalibrationError(
            f"{folder}: {len(files)} audio file(s) (wav, flac, ogg); a profile needs at least {cfg.min_clips} "
            "clips of the recordings it is for (calibrate.min_clips)"
        )
    if len(files) > want:
        rng = np.random.default_rng(seed)
        files = sorted(rng.choice(files, want, replace=False).tolist())
    return files


def check_speakers(folder: Path, files: list[str], cfg: CalibrateParams) -> int | None:
    """How many speakers the folder names (None when its layout names none).

    Raises:
        CalibrationError: fewer than `cfg.min_speakers`.
    """
    speakers = [folder_speaker(f) for f in files]
    if any(s is None for s in speakers):
        return None
    count = len(set(speakers))
    if count < cfg.min_speakers:
        raise CalibrationError(
            f"{folder}: the clips are of {count} speaker(s) ({', '.join(sorted(set(map(str, speakers))))}); a profile "
            f"needs {cfg.min_speakers} or more (calibrate.min_speakers), or it learns one voice: for one speaker's "
            "clips use speaker enrolment (ser predict --speaker, /predict_speaker)"
        )
    return count


def calibrate(
    model_dir: Path,
    folder: Path,
    name: str,
    cfg: CalibrateParams,
    *,
    min_rms_dbfs: float,
    clips: int | None = None,
    seed: int = 0,
    classes: list[str] | None = None,
    hop_s: float = 1.75,
) -> tuple[Path, Profile]:
    """Estimate and save the profile `name` for the model in `model_dir` from `folder`'s clips.

    Raises:
        CalibrationError: a bad name or class, too few usable clips, one speaker, a model without a statistics head;
            nothing is written then.
    """
    from ser.audio import AudioError
    from ser.serving.predict import LOCAL_LIMITS
    from ser.serving.predictor import Predictor
    from ser.serving.profiles import class_subset
    from ser.serving.uploads import Limits, UploadError, decode_upload
    from ser.training.model import load_model

    check_name(name)
    files = pick_files(folder, clips, cfg, seed)
    speakers = check_speakers(folder, files, cfg)
    predictor = Predictor(model_dir, hop_s=hop_s, max_batch=8, warm=False)
    head = StatsHead.of(load_model(Path(model_dir) / "model.keras"))
    keep = class_subset(predictor.classes, classes)
    limits = Limits.from_serve(LOCAL_LIMITS)
    waves: list[np.ndarray] = []
    refused: Counter[str] = Counter()
    for rel in files:
        try:
            wave = decode_upload(folder / rel, predictor.params.sample_rate, limits).wave
        except (UploadError, AudioError, OSError) as err:
            refused[getattr(err, "code", "unreadable")] += 1
            log.info("%s: left out (%s)", folder / rel, err)
            continue
        rms_db = 20 * np.log10(float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) + 1e-12)
        if rms_db < min_rms_dbfs:
            refused["silent"] += 1
            continue
        waves.append(wave)
    if len(waves) < cfg.min_clips:
        raise CalibrationError(
            f"{folder}: {len(waves)} of {len(files)} clip(s) usable ({dict(refused) or 'none refused'}; silent: "
            f"RMS under {min_rms_dbfs:g} dBFS, validate.min_rms_dbfs); a profile needs {cfg.min_clips} "
            "(calibrate.min_clips)"
        )
    scored = predictor.run_scored([predictor.featurize(w)[0] for w in waves])  # (probabilities, stats) per clip
    stats = np.concatenate([s for _, s in scored])
    plain = np.stack([p.mean(0) for p, _ in scored])
    mean, scale = estimate(stats, head.mean, head.scale, shrink=cfg.shrink, scale_too=cfg.scale)
    subset = [predictor.classes[i] for i in keep] if keep else []
    profile = Profile(name, mean, scale, head, subset, share=cfg.head_share)
    calibrated = np.stack([profile.apply(p, stats=s).mean(0) for p, s in scored])
    answer_classes = [predictor.classes[i] for i in keep] if keep else predictor.classes
    shares = {
        kind: dict(Counter(answer_classes[i] for i in restrict(p, keep).argmax(1)).most_common())
        for kind, p in (("plain", plain), ("calibrated", calibrated))
    }
    top, top_n = next(iter(shares["calibrated"].items()))
    warnings = []
    if top_n / len(waves) > cfg.one_sided_share:
        warnings.append(
            f"one-sided: the calibrated model calls {top_n} of {len(waves)} clips {top!r} (more than "
            f"{cfg.one_sided_share:.0%}, calibrate.one_sided_share): the set may hold mostly one emotion, which shifts "
            "the profile toward it (calibrate on a mix of the deployment's everyday recordings), or the model may not "
            "tell these recordings apart (check it with `ser evaluate --corpus` on some labelled ones)"
        )
    if speakers is None:
        warnings.append(
            "speakers unknown (a flat folder): put each speaker's clips in a subfolder to have them counted"
        )
    profile.info = {
        "model_digest": model_digest(model_dir),
        "folder": str(folder),
        "clips": len(waves),
        "files": len(files),
        "left_out": dict(refused),
        "speakers": speakers,
        "seed": seed,
        "shrink": cfg.shrink,
        "scale": cfg.scale,
        "weight": len(waves) / (len(waves) + cfg.shrink) if cfg.shrink else 1.0,
        "answers": shares,
        "warnings": warnings,
    }
    for w in warnings:
        log.warning("%s", w)
    return profile.save(model_dir), profile
