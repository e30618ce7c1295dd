"""Where one `/predict` request's time goes: HTTP and the upload gate, decode, level, log-mel, encoder, head, JSON.

One 3.5 s 16 kHz WAV (the serve benchmark's clip), the stored model (`--model`, default $SER_MODEL_TAG or
ser_emotion:latest), 2 cores. The in-process stages are the service's own functions, timed one request at a
time (`--repeats`, medians): decoding (`decode_upload`: header checks, decode, downmix), windowing, the speech
level and the log-mel (`ser.features.frontend`), the graph call split by onnxruntime's per-node profile into the
encoder (`front/` nodes), the CNN-LSTMs and statistics head (`model/`) and the clip statistics (`stats/`), and
the answer (`summarise`, pydantic's JSON). A served request's median latency (sequential requests to `bentoml
serve`) less those stages is the HTTP, multipart and upload-gate share. Resampling is timed on a 48 kHz upload.

    python -m bench.request_profile --out reports/onnx/request-profile.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.serve_load import clip_bytes, drive
from ser.io import write_json
from tests.support import Served


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(times)), 3)


def graph_split(model_dir: Path, inputs: np.ndarray, repeats: int) -> dict[str, float]:
    """Median ms per call of each scope of the exported graph (re-built with node scopes from model.keras)."""
    import onnxruntime as ort

    from ser.config import FeatureParams
    from ser.io import read_json
    from ser.training.model import load_model
    from ser.training.onnx_export import inference_graph

    params = FeatureParams(**read_json(model_dir / "preprocess.json")["features"])
    graph = inference_graph(load_model(model_dir / "model.keras"), params)
    options = ort.SessionOptions()
    options.enable_profiling, options.inter_op_num_threads = True, 1
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(repeats + 1):
        session.run(None, {"frontend": inputs})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * (repeats + 1))
    runs = [e for e in events if e.get("name") == "model_run"]
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        run = sum(1 for r in runs if r["ts"] <= event["ts"]) - 1  # the model_run that contains it
        scope = event["name"].split("/")[0] if "/" in event["name"] else "other"
        if 0 <= run <= repeats:
            per_run[scope][run] += event["dur"] / 1000
    return {scope: round(float(np.median(times[1:])), 3) for scope, times in per_run.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("SER_MODEL_TAG", "ser_emotion:latest"))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import bentoml
    import soxr

    from ser.audio import normalise_level
    from ser.features.frontend import logmel_db
    from ser.serving.predictor import Predictor
    from ser.serving.uploads import Limits, decode_upload

    stored = bentoml.models.get(args.model)
    model_dir = Path(stored.path)
    data = clip_bytes()
    clip = Path(tempfile.mkdtemp()) / "clip.wav"
    clip.write_bytes(data)
    predictor = Predictor(model_dir, max_batch=8)
    front, limits = predictor.frontend, Limits.from_serve(dict(stored.info.metadata.get("serve") or {}))  # type: ignore[arg-type]
    rate = predictor.params.sample_rate
    wave = decode_upload(clip, rate, limits).wave
    windows, starts = predictor.windows(wave)
    levelled = normalise_level(windows, rate, front.spec["level_db"])
    inputs = front(windows)
    probs, stats = predictor.run(inputs)
    spec = front.spec
    stages = {
        "decode (header checks, decode, downmix)": median_ms(lambda: decode_upload(clip, rate, limits), args.repeats),
        "resample (the same clip uploaded at 48 kHz)": median_ms(
            lambda: soxr.resample(np.repeat(wave, 3), 48000, rate, quality="HQ"), args.repeats
        ),
        "windows": median_ms(lambda: predictor.windows(wave), args.repeats),
        "speech level": median_ms(lambda: normalise_level(windows, rate, spec["level_db"]), args.repeats),
        "log-mel (front end)": median_ms(
            lambda: logmel_db(levelled, front.bank, front.window, spec["hop_length"], spec["top_db"]), args.repeats
        ),
    }
    graph = graph_split(model_dir, inputs, args.repeats)
    stages["encoder (graph, front/)"] = graph.pop("front", 0.0)
    stages["CNN-LSTMs + statistics head (graph, model/)"] = graph.pop("model", 0.0)
    stages["clip statistics (graph, stats/)"] = graph.pop("stats", 0.0)
    stages["graph call, rest"] = round(
        median_ms(lambda: predictor.run(inputs), args.repeats) - sum(stages[k] for k in list(stages)[-3:]), 3
    )

    def answer() -> str:
        summary = predictor.summarise(probs, starts, len(wave) / rate)
        return json.dumps(summary)

    stages["answer (summarise, JSON)"] = median_ms(answer, args.repeats)
    with Served("ser.serving.service:EmotionService", env={"SER_MODEL_TAG": str(stored.tag)}) as base:
        asyncio.run(drive(f"{base}/predict", data, 2.0, 1))
        served = asyncio.run(drive(f"{base}/predict", data, 10.0, 1))
    inside = sum(v for k, v in stages.items() if not k.startswith("resample"))
    stages["HTTP, multipart, upload gate (served p50 less the above)"] = round(served["p50_ms"] - inside, 3)
    results = {"model": str(stored.tag), "served_p50_ms": served["p50_ms"], "stages_ms": stages}
    for name, ms in stages.items():
        print(f"{ms:9.2f} ms  {name}")
    print(f"{served['p50_ms']:9.2f} ms  served request, p50")
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
