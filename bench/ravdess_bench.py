"""The RAVDESS benchmark: speaker-independent 6-fold, the article's random 80/20, and cost.

Runs the pipeline's own code (`bench.protocols`: manifest, windows, augmentation,
`features.extract`, `train.fit`, `evaluate.score`; the serving `Predictor` for inference
times) on ../shared/data/ravdess-speech-16k with the model and training params
of params.yaml (override any with --set, as `dvc exp run -S` does), and writes
`results.json` and `results.md` (mean ± std over folds and seeds, anchors beside), and
`probs.npz` (each run's test-clip probabilities, for seed ensembles across runs).
Skips with a message when the corpus is absent.

    python -m bench.ravdess_bench                      # 6 folds x 1 seed + article protocol + cost
    python -m bench.ravdess_bench --seeds 3 --set model.pooling=attention --out reports/bench
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.results import save_probs, summarise

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "ravdess-speech-16k"

log = logging.getLogger("ravdess_bench")


def measure_cost(params, runs: list[dict], model_dir: Path, corpus_dir: Path, clips) -> dict:
    """Feature throughput against librosa, training time, memory, parameters, inference latency.

    Args:
        runs: the per-run records (`summarise(...)["runs"]` plus `params`/`train_windows`).
        model_dir: a saved model (the first run's) for the inference timings.
    """
    from bench.features_bench import feature_throughput
    from ser.audio import fixed_window, load_audio
    from ser.serving.export import export_model
    from ser.serving.predictor import Predictor

    f = params.features
    paths = [corpus_dir / p for p in clips["path"].iloc[:: max(1, len(clips) // 256)][:256]]
    waves = [load_audio(p, f.sample_rate) for p in paths]
    windows = np.stack([fixed_window(w, f.sample_rate, f.offset, f.duration) for w in waves])
    cost = {"features": feature_throughput(windows, f, repeats=5)}
    epoch_s = [r["train_seconds"] / r["epochs_run"] for r in runs]
    cost["training"] = {
        "seconds_per_epoch_median": float(np.median(epoch_s)),
        "seconds_per_run_median": float(np.median([r["train_seconds"] for r in runs])),
        "seconds_all_runs": float(sum(r["train_seconds"] for r in runs)),
        "epochs_median": float(np.median([r["epochs_run"] for r in runs])),
        "train_windows": runs[0]["train_windows"],
    }
    cost["model_parameters"] = runs[0]["params"]
    export_model(model_dir, windows[:16], [str(p) for p in paths[:16]])  # what serving runs, checked on these
    predictor = Predictor(model_dir, max_batch=32)
    single = []
    for wave in waves[:64]:
        t0 = time.perf_counter()
        feats, _ = predictor.featurize(wave[: int((f.offset + f.duration) * f.sample_rate)])
        predictor.infer(feats)
        single.append(time.perf_counter() - t0)
    batched = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(0, len(windows), 32):
            predictor.infer(predictor.frontend(windows[i : i + 32]))
        batched.append((time.perf_counter() - t0) / len(windows))
    cost["inference_ms_per_clip"] = {
        "single": 1e3 * float(np.median(single)),
        "batched_32": 1e3 * float(np.median(batched)),
    }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cost["peak_memory_mb"] = {"benchmark_process": round(rss), "largest_worker": round(kids)}
    return cost


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else `platform.processor()`): timings and, through the
    instruction sets oneDNN picks kernels for, trained weights depend on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host() -> dict:
    """What ran the benchmark: commit, CPUs, GPUs, Keras backend."""
    import keras

    from ser.training.placement import visible_gpus

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:  # no git (a copied tree): the commit can come from SER_COMMIT
            return ""

    commit = git("rev-parse", "--short", "HEAD") or os.environ.get("SER_COMMIT", "unknown")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit + ("+changes" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "gpus": visible_gpus(),
        "keras_backend": keras.backend.backend(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="RAVDESS-layout folder (default: %(default)s)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params key, e.g. --set train.epochs=60 (repeatable)",
    )
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument(
        "--only-folds",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="run just these 0-based folds (a quick look; the table then covers fewer speakers)",
    )
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per fold")
    ap.add_argument(
        "--select-speakers",
        type=int,
        default=0,
        metavar="N",
        help="(a) only: hold N more training speakers out, scored only, to compare settings without "
        "the bias of the validation speakers that early stopping chose the epoch on",
    )
    ap.add_argument("--protocols", default="speaker,article,cost")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench", help="feature cache")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if not args.corpus.is_dir():
        print(f"skipped: the RAVDESS corpus is not at {args.corpus} (pass --corpus DIR; see README 'Benchmark')")
        return 0

    from bench.protocols import article_split, prepare, speaker_folds
    from ser.config import load_params
    from ser.io import read_json
    from ser.overrides import override
    from ser.training.train import save_model

    params = override(load_params(args.params), args.sets)
    protocols = set(args.protocols.split(","))
    start = time.perf_counter()
    command = " ".join(["python -m bench.ravdess_bench", *(argv if argv is not None else sys.argv[1:])])
    if protocols == {"cost"}:  # re-measure cost for an earlier run's results (no training)
        res = read_json(args.out / "results.json")
        runs = res.get("speaker", res.get("article"))["runs"]
        clips = prepare(args.corpus, params, args.cache).clips
        res["cost"] = measure_cost(params, runs, args.out / "model", args.corpus, clips)
        # Training figures stay those of the original run; the rest is re-measured now.
        res["cost"]["remeasured"] = {"host": host(), "command": command}
        return write_results(res, args.out)
    corpus = prepare(args.corpus, params, args.cache)
    res = {
        "command": command,
        "host": host(),
        "params": params.model_dump(by_alias=True),
        "clips": len(corpus.clips),
        "dropped": corpus.dropped,
    }
    speaker = []
    if "speaker" in protocols:
        speaker = list(speaker_folds(corpus, params, args.folds, args.seeds, args.only_folds, args.select_speakers))
        classes = speaker[0]["stats"]["classes"]
        res["speaker"] = summarise(speaker, classes)
        save_probs(speaker, args.out / "probs.npz")
        held = f" and {args.select_speakers} selection speakers (scored only)" if args.select_speakers else ""
        res["speaker_protocol"] = (
            f"{args.folds} folds of whole speakers (every speaker tested once), {params.split.val_speakers} "
            f"validation speakers{held} per fold taken from the training speakers, {args.seeds} seed(s) per fold; "
            f"{len(classes)} classes."
        )
    if "article" in protocols:
        article = list(article_split(corpus, params, args.seeds))
        res["article"] = summarise(article, article[0]["stats"]["classes"])
        res["article_protocol"] = (
            "7 classes (calm dropped), clips shuffled regardless of speaker: 20 % test, "
            "10 % validation, 70 % training; one split per seed."
        )
        speaker = speaker or article
    if params.train.refit:
        chosen = (
            " once the validation clips had chosen the head's C"
            if params.model.stats_head
            else " (the cosine schedule chooses nothing on them)"
        )
        note = (
            " train.refit: the final models trained on the training and validation clips together"
            f"{chosen}, so validation scores are on seen clips."
        )
        for key in {"speaker_protocol", "article_protocol"} & set(res):
            res[key] += note
    res["wall_seconds"] = time.perf_counter() - start
    if speaker:  # the first run's model: inference timings now or later (--protocols cost)
        save_model(speaker[0]["model"], speaker[0]["stats"], {}, args.out / "model")
    if "cost" in protocols and speaker:
        key = "speaker" if "speaker" in res else "article"
        res["cost"] = measure_cost(params, res[key]["runs"], args.out / "model", args.corpus, corpus.clips)
    return write_results(res, args.out)


def write_results(res: dict, out: Path) -> int:
    """results.json and results.md under `out` (each replaced atomically); the markdown also to stdout."""
    from bench.ravdess_report import markdown
    from ser.io import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", res)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
