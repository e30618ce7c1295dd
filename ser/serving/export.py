"""`ser export`: a trained model folder gains `model.onnx` and `frontend.npz`, what serving runs.

The Keras model and its feature kind's front end become one ONNX graph (`ser.training.onnx_export`), which
is run with onnxruntime on the validation windows (the validation clips' training windows, decoded from the
corpus again) against Keras on the training features of the same windows: every window's probabilities
must agree within `TOLERANCE` and name the same top class, or nothing is written and the error names the
worst window. The train stage runs it after `ser train` (dvc.yaml), so `models/` always holds both; `ser
package` stores them with the BentoML model.

    ser export --model-dir models --features data/features --manifest data/validated/manifest.csv \
        --audio-dir data/raw
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ser.config import FeatureParams
from ser.features import extract, feature_kind
from ser.features.frontend import FILE as FRONTEND_FILE
from ser.io import atomic_path, file_digest, read_json

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"  # serve.precision int8: the same graph, its matrix products quantised
PRECISION_FILES = {"fp32": ONNX_FILE, "int8": INT8_FILE}
TOLERANCE = 1e-4  # max |probability difference| of a window between Keras and the exported graph
CHUNK = 32  # windows per call: bounds the encoder's working memory


class ExportError(RuntimeError):
    """The model cannot be exported, or the export disagrees with Keras (the message names where)."""


def validation_windows(features_dir: Path, manifest_path: Path, audio_dir: Path) -> tuple[np.ndarray, list[str]]:
    """The validation clips' windows as featurize cut them (no augmented copies), and their clip ids."""
    import pandas as pd

    from ser.config import AugmentParams
    from ser.data.featurize import window_clips
    from ser.data.ingest import read_manifest

    stats = read_json(features_dir / "stats.json")
    index = pd.read_csv(features_dir / "index.csv")
    wanted = index.loc[(index["split"] == "val") & (index["copy"] == 0), "clip_id"]
    clips = read_manifest(manifest_path).set_index("clip_id").loc[wanted].reset_index()
    if clips.empty:
        raise ExportError(f"{features_dir / 'index.csv'}: no validation windows to check the export on")
    params = FeatureParams(**stats["features"])
    _, waves = window_clips(clips, audio_dir, np.zeros(len(clips), int), params, AugmentParams(), workers=1)
    return np.stack(waves), clips["clip_id"].astype(str).tolist()


def _chunked(run, x: np.ndarray) -> np.ndarray:
    return np.concatenate([run(x[i : i + CHUNK]) for i in range(0, len(x), CHUNK)])


def compare(reference: np.ndarray, exported: np.ndarray, names: list[str]) -> dict:
    """The agreement of two (windows, classes) probability arrays, or ExportError naming the worst window."""
    diff = np.abs(reference - exported).max(axis=1)
    flipped = np.flatnonzero(reference.argmax(1) != exported.argmax(1))
    worst = int(flipped[0] if len(flipped) else diff.argmax())
    if diff[worst] > TOLERANCE or len(flipped):
        raise ExportError(
            f"the ONNX graph disagrees with Keras on window {names[worst]}: max |dp| {diff[worst]:.2e} "
            f"(limit {TOLERANCE:g}), top class {exported[worst].argmax()} against {reference[worst].argmax()}"
        )
    return {"windows": len(names), "max_abs_diff": float(diff.max()), "tolerance": TOLERANCE}


def export_model(model_dir: Path, windows: np.ndarray, names: list[str]) -> dict:
    """Write `model.onnx` and `frontend.npz` into `model_dir` once the graph agrees with Keras on `windows`, and its
    int8 version (`quantize`).

    Raises:
        ExportError: the graph disagrees with Keras (nothing written).
        UnsupportedLayer: a layer without an ONNX mapping (nothing written).
    """
    import onnx
    import onnxruntime as ort

    from ser.training.model import load_model
    from ser.training.onnx_export import INPUT, inference_graph

    model_dir = Path(model_dir)
    preprocess = read_json(model_dir / "preprocess.json")
    params = FeatureParams(**preprocess["features"])
    kind = feature_kind(params.kind)
    kind.use_packaged(model_dir)  # a packaged model's own encoder weights, where it carries them
    model = load_model(model_dir / "model.keras")
    graph = inference_graph(model, params)
    front = kind.frontend(params)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    exported = _chunked(lambda x: session.run(None, {INPUT: front(x)})[0], windows)
    reference = _chunked(lambda x: np.asarray(model(extract(x, params), training=False)), windows)
    check = compare(reference, exported, names)
    meta = {"keras_sha256": file_digest(model_dir / "model.keras"), "classes": preprocess["classes"], "check": check}
    onnx.helper.set_model_props(graph, {"ser": json.dumps(meta)})
    with atomic_path(model_dir / ONNX_FILE) as tmp:
        tmp.write_bytes(graph.SerializeToString())
    with atomic_path(model_dir / FRONTEND_FILE) as tmp, tmp.open("wb") as fh:
        front.save(fh)
    quantize(model_dir)
    log.info(
        "exported %s: %d validation windows, max |dp| %.1e", model_dir / ONNX_FILE, len(names), check["max_abs_diff"]
    )
    return check


def quantize(model_dir: Path) -> Path:
    """`model.int8.onnx` beside `model.onnx`: onnxruntime's dynamic int8 quantisation of the matrix products by
    weights (the encoder's projections and MLPs, the heads' dense layers; the attention's products of two
    activations stay float32), one scale per output channel (chosen on the validation clips: the closer to fp32,
    docs/experiment-log.md run AY)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # the tool logs advice for static quantisation on the root logger
    try:
        with atomic_path(Path(model_dir) / INT8_FILE) as tmp:
            quantize_dynamic(
                Path(model_dir) / ONNX_FILE, tmp, op_types_to_quantize=["MatMul"], per_channel=True,
                weight_type=QuantType.QInt8,
            )  # fmt: skip
    finally:
        root.setLevel(level)
    return Path(model_dir) / INT8_FILE


def exported_from(model_dir: Path) -> str | None:
    """The SHA-256 of the model.keras that `model_dir`'s model.onnx was exported from (None: no export)."""
    path = Path(model_dir) / ONNX_FILE
    if not path.is_file():
        return None
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props.get("ser", "{}")).get("keras_sha256")
