"""The ONNX export of a stored model on a real corpus: agreement with Keras, speed per window, int8 against fp32.

Takes a model from the BentoML store (e.g. the default trained on RAVDESS before the export existed), cuts the
validation and test clips' training windows of `--corpus` by the model's own split params, exports the model
with `ser.serving.export.export_model` (checked on the validation windows), then reports on the test windows:
the largest probability difference against Keras on the training features and the top-class agreement, each
precision's test accuracy / UAR, and the graph's time per window (median of `--repeats`, batches of 8) for
fp32 and int8 (`ser.serving.export.quantize`). `--save-as NAME` saves the exported model to the store (the
Keras files kept too), so `bench.serve_bench` can serve it with either engine.

    python -m bench.onnx_bench --model ser_emotion:b4pckixslkkjeax4 \
        --corpus ../shared/data/ravdess-speech-16k --save-as ser_emotion --out reports/onnx/ravdess-default.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np

from bench.protocols import usable_clips
from ser.config import AugmentParams, FeatureParams, parse_params
from ser.data.featurize import window_clips
from ser.data.ingest import build_manifest
from ser.data.splits import assign_splits
from ser.features import extract
from ser.io import read_json, write_json
from ser.serving.export import INT8_FILE, ONNX_FILE, export_model, quantize
from ser.training.evaluate import score


def split_windows(corpus: Path, params, features: FeatureParams, classes: list[str]) -> dict:
    """{split: (windows, labels, clip ids)} of the val and test clips, cut as featurize cuts them."""
    clips, _ = usable_clips(build_manifest(corpus))
    clips = clips[clips["emotion"].isin(classes)].reset_index(drop=True)
    clips["split"] = assign_splits(clips, params.split).to_numpy()
    out = {}
    for split in ("val", "test"):
        rows = clips[clips["split"] == split].reset_index(drop=True)
        _, waves = window_clips(rows, corpus, np.zeros(len(rows), int), features, AugmentParams(), workers=2)
        out[split] = (np.stack(waves), rows["emotion"].map(classes.index).to_numpy(), rows["clip_id"].tolist())
    return out


def per_window_ms(predictor, inputs: np.ndarray, repeats: int, batch: int = 8) -> float:
    """Median milliseconds per window of the graph call on `batch` windows."""
    x = inputs[:batch]
    predictor.run(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.run(x)
        times.append((time.perf_counter() - start) * 1000 / len(x))
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ser_emotion:latest")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--save-as", default=None, help="store the exported model under this name")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("reports/onnx/bench.json"))
    args = parser.parse_args(argv)

    import bentoml

    from ser.serving.predictor import Predictor
    from ser.training.model import load_model

    stored = bentoml.models.get(args.model)
    meta = stored.info.metadata
    params = parse_params(cast(dict, meta["params"]), f"{args.model} metadata")
    folder = Path(tempfile.mkdtemp(prefix="ser-onnx-")) / "model"
    shutil.copytree(stored.path, folder)
    preprocess = read_json(folder / "preprocess.json")
    features, classes = FeatureParams(**preprocess["features"]), preprocess["classes"]
    windows = split_windows(args.corpus, params, features, classes)
    check = export_model(folder, windows["val"][0], windows["val"][2])
    quantize(folder)
    test_x, test_y, _ = windows["test"]
    keras_p = np.asarray(load_model(folder / "model.keras").predict(extract(test_x, features), batch_size=32))
    results: dict = {"model": str(stored.tag), "corpus": str(args.corpus), "val_check": check, "precisions": {}}
    for precision in ("fp32", "int8"):
        predictor = Predictor(folder, precision=precision, max_batch=32, warm=False)
        inputs = np.concatenate([predictor.frontend(test_x[i : i + 32]) for i in range(0, len(test_x), 32)])
        probs = predictor.run(inputs)[0]
        scored = score(test_y, probs.argmax(1), classes)
        results["precisions"][precision] = {
            "test_windows": len(test_x),
            "max_abs_diff_vs_keras": float(np.abs(probs - keras_p).max()),
            "top_class_agreement": float((probs.argmax(1) == keras_p.argmax(1)).mean()),
            "accuracy": scored["accuracy"],
            "uar": scored["uar"],
            "ms_per_window_batch8": per_window_ms(predictor, inputs, args.repeats),
            "file_mb": round((folder / (ONNX_FILE if precision == "fp32" else INT8_FILE)).stat().st_size / 2**20, 1),
        }
    keras_scored = score(test_y, keras_p.argmax(1), classes)
    results["keras"] = {"accuracy": keras_scored["accuracy"], "uar": keras_scored["uar"]}
    fp32, int8 = results["precisions"]["fp32"], results["precisions"]["int8"]
    results["int8_speedup"] = round(fp32["ms_per_window_batch8"] / int8["ms_per_window_batch8"], 2)
    results["int8_uar_change"] = round(int8["uar"] - fp32["uar"], 4)
    if args.save_as:
        with bentoml.models.create(name=args.save_as, metadata=meta, labels=stored.info.labels) as model:
            shutil.copytree(folder, model.path, dirs_exist_ok=True)
        results["saved_as"] = str(model.tag)
    write_json(args.out, results)
    print(results)
    return results


if __name__ == "__main__":
    main()
