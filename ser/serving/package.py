"""The `package` stage: save the accepted model to the BentoML model store.

Only a model that passed the quality gates (`reports/metrics.json`, and the
Prefect champion/challenger verdict `reports/gate.json` when that file exists)
is saved, as `ser_emotion:<version>`, holding `model.keras`, `preprocess.json`, what serving runs
(`model.onnx` and `frontend.npz`, `ser export`, checked to be exported from this model.keras) and, when
the train stage fitted one, the speaker-enrolment head `enrolment.npz`, and the domain-calibration
profiles estimated for this model (`profiles/*.npz`, `ser calibrate`).
Its metadata carries everything the service needs without the repository
(classes, feature parameters, normalisation statistics, the `serve` limits) plus
the provenance: metrics, the whole params.yaml, the DVC hashes of the data and
the model, and the git commit. `out_path` (the DVC output) records the tag.

    ser package --params params.yaml --model-dir models --metrics reports/metrics.json \
        --out reports/package.json
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import yaml

from ser.config import FeatureParams, Params
from ser.data.licences import licence_label, licence_terms
from ser.features import feature_kind
from ser.features.frontend import FILE as FRONTEND_FILE
from ser.io import file_digest, read_json, write_json
from ser.serving.card import corpora_of, write_model_card
from ser.serving.export import INT8_FILE, ONNX_FILE, exported_from
from ser.serving.profiles import load_profiles

log = logging.getLogger(__name__)

MODEL_NAME = "ser_emotion"
MODEL_FILES = ("model.keras", "preprocess.json", ONNX_FILE, INT8_FILE, FRONTEND_FILE)  # serving runs the ONNX graph
OPTIONAL_FILES = ("enrolment.npz",)  # the speaker-enrolment head (/predict_speaker), when the train stage fitted one


class PackageError(RuntimeError):
    """The model may not be packaged: a gate failed, or an input is missing."""


def check_accepted(metrics_path: Path, gate_path: Path | None, model_md5: str | None = None) -> dict:
    """Return the metrics when the model passed every gate; raise PackageError otherwise.

    A `gate.json` verdict about another model (its candidate md5 differs from `model_md5`, the
    current model's hash in dvc.lock) is stale and ignored: only the absolute gates apply then.
    """
    if not metrics_path.is_file():
        raise PackageError(f"{metrics_path}: metrics not found; run the evaluate stage first")
    metrics = read_json(metrics_path)
    if metrics.get("gates_passed") is not True:
        raise PackageError(
            f"{metrics_path}: gates_passed is {metrics.get('gates_passed')!r}; "
            "only a model that passed the quality gates is packaged"
        )
    if gate_path is not None and gate_path.is_file():
        gate = read_json(gate_path)
        about = (gate.get("candidate") or {}).get("model_md5")
        if model_md5 and about and about != model_md5:
            log.info("%s judged model %s, not the current %s: ignoring it", gate_path, about, model_md5)
        elif gate.get("accepted") is False:
            reason = gate.get("reason") or gate.get("message") or "no reason given"
            raise PackageError(f"{gate_path}: the champion/challenger gate rejected this model ({reason})")
    return metrics


def dvc_hashes(lock_path: Path, paths: tuple[str, ...]) -> dict[str, str | None]:
    """md5 of each named stage output in dvc.lock (None when the lock or the output is absent)."""
    hashes: dict[str, str | None] = dict.fromkeys(paths)
    if not lock_path.is_file():
        return hashes
    lock = yaml.safe_load(lock_path.read_text()) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") in hashes:
                hashes[out["path"]] = out.get("md5")
    return hashes


def git_commit(cwd: Path | None = None) -> str | None:
    """`git rev-parse HEAD`, or None outside a repository or without git."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def plain(value):
    """Metadata the store accepts: keys holding None are dropped (BentoML refuses None values)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value if v is not None]
    return value


def build_metadata(params: Params, preprocess: dict, metrics: dict, hashes: dict, commit: str | None) -> dict:
    """The model-store metadata: what serving needs first, provenance after (None-valued keys dropped).

    `corpora` are preprocess.json's (params.yaml's sources for a model from before them); `licence` is the
    terms the model inherits from them (`ser.data.licences.licence_terms`).
    """
    dumped = params.model_dump(mode="json", by_alias=True)
    corpora = corpora_of(dumped, preprocess)
    metadata = {
        "classes": preprocess["classes"],
        "features": preprocess["features"],
        "shape": preprocess["shape"],
        "norm": {"mean": preprocess["mean"], "variance": preprocess["variance"]},
        "serve": params.serve.model_dump(),
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion")},
        "per_class": metrics.get("per_class", {}),
        "training": preprocess.get("training", {}),
        "corpora": corpora,
        "licence": licence_terms(corpora),
        "params": dumped,
        "dvc": hashes,
        "git_commit": commit,
    }
    return plain(metadata)


def package(
    params: Params,
    model_dir: Path,
    metrics_path: Path,
    out_path: Path,
    *,
    lock_path: Path = Path("dvc.lock"),
    gate_path: Path | None = Path("reports/gate.json"),
    data_path: str = "data/raw",
    name: str = MODEL_NAME,
    card_path: Path | None = Path("reports/model_card.md"),
) -> dict:
    """Save the accepted model to the BentoML store and write `out_path`.

    Args:
        params: the whole params.yaml (stored in the metadata; `serve` drives the service).
        model_dir: folder holding model.keras and preprocess.json (the train stage output).
        metrics_path: reports/metrics.json from evaluate; `gates_passed` must be true.
        out_path: JSON summary to write (tag, version, hashes, commit).
        lock_path: dvc.lock to read the data and model hashes from.
        gate_path: the flow's champion/challenger verdict; `"accepted": false` refuses.
        data_path: the DVC output holding the corpus.
        name: model name in the store.

    Returns:
        The summary written to `out_path`.

    Raises:
        PackageError: a gate failed or an input is missing.
    """
    import bentoml

    hashes = dvc_hashes(lock_path, (data_path, str(model_dir).rstrip("/")))
    metrics = check_accepted(metrics_path, gate_path, hashes[str(model_dir).rstrip("/")])
    missing = [f for f in MODEL_FILES if not (model_dir / f).is_file()]
    if missing:
        raise PackageError(f"{model_dir}: missing {', '.join(missing)}; run the train stage (or `ser export`) first")
    if exported_from(model_dir) != file_digest(model_dir / "model.keras"):
        raise PackageError(f"{model_dir}: {ONNX_FILE} was exported from another model.keras; run `ser export`")
    preprocess = read_json(model_dir / "preprocess.json")
    commit = git_commit(lock_path.parent if lock_path.parent.exists() else None)
    metadata = build_metadata(params, preprocess, metrics, hashes, commit)
    labels = {
        "task": "speech-emotion-recognition",
        "gates": "passed",
        "uar": f"{metrics.get('uar', 0):.3f}",
        "licence": licence_label(metadata["licence"]),
        "commit": (commit or "none")[:12],
    }
    card = (metrics, params.model_dump(mode="json", by_alias=True), preprocess, hashes.get(data_path))
    with bentoml.models.create(name=name, metadata=metadata, labels=labels) as model:
        for file in (*MODEL_FILES, *(f for f in OPTIONAL_FILES if (model_dir / f).is_file())):
            shutil.copy2(model_dir / file, model.path_of(file))
        for profile in load_profiles(model_dir).values():  # this model's calibrations (`ser calibrate`)
            profile.save(Path(model.path))
        features = FeatureParams(**preprocess["features"])
        feature_kind(features.kind).package_files(Path(model.path), features)  # e.g. a frozen encoder
        write_model_card(Path(model.path_of("model_card.md")), *card, model.tag.version, commit)
    if card_path is not None:
        write_model_card(card_path, *card, model.tag.version, commit)
    summary = {
        "tag": str(model.tag),
        "name": name,
        "version": model.tag.version,
        "classes": preprocess["classes"],
        "uar": metrics.get("uar"),
        "dvc": hashes,
        "git_commit": commit,
    }
    write_json(out_path, summary)
    log.info("saved %s to the BentoML model store (%s)", model.tag, model.path)
    return summary
