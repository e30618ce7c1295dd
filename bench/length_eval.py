"""A trained model on short clips and under recording conditions: its own test clips cut to 1, 1.5, 2 and 3.5 s,
and whole under noise, a telephone line, a room or another level, scored through serving (issue 29).

Each test clip of the run (`split == test` in the featurize index) is cut to the first L seconds of its
window (from `features.offset`), written as its own short file and scored by `ser evaluate`'s cross-corpus
path (`ser.serving.crosscorpus.evaluate_corpus`: the serving `Predictor`, which scores a clip up to the
window's length whole, zero-padded). At 3.5 s the cut is the training window itself, so that row repeats
the evaluate stage's test score. `--conditions` (`bench.robustness_probe.parse_condition`: noise:SNR, telephone,
reverb:RT60, level:DB) adds a row per condition: the whole window under it, each clip's noise and room seeded by its
id. Each row also gets the expected calibration error and the share of clips predicted as each class: a model that
only knows full-length studio clips floods a class on short or noisy ones.

    .venv/bin/python -m bench.length_eval --model-dir models --corpus data/raw \
        --manifest data/manifest.csv --index data/features/index.csv --out reports/length-eval
    # after `make run`, whose workspace is gone: the evaluate stage's predictions name the test clips
    .venv/bin/python -m bench.length_eval --model-dir runs/latest/models --index runs/latest/reports/predictions.csv \
        --corpus ../shared/data/ravdess-speech-16k
    .venv/bin/python -m bench.length_eval --model-dir runs/latest/models --index runs/latest/reports/predictions.csv \
        --corpus ../shared/data/ravdess-speech-16k --lengths 3.5 --conditions noise:20 telephone level:-30

Writes `results.md`, `results.json` and each length's metrics, predictions and confusion PNG under --out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.length_report import LENGTHS


def cut_clips(
    clips: pd.DataFrame, corpus: Path, folder: Path, seconds: float, features, condition: str | None = None
) -> Path:
    """Write each clip's window cut to `seconds` (no padding), under `condition` if given, in `folder`; return the
    labels TSV."""

    import numpy as np
    import soundfile as sf

    from bench.robustness_probe import degrade
    from ser.audio import load_audio
    from ser.data.clips import clip_seed

    sr, start = features.sample_rate, round(features.offset * features.sample_rate)
    lines = ["path\temotion"]
    for row in clips.itertuples():
        wave = load_audio(corpus / row.path, sr)[start : start + round(seconds * sr)]
        if condition:
            wave = degrade(wave, condition, sr, np.random.default_rng([29, clip_seed(row.clip_id)]))
        name = f"{row.clip_id}.flac"  # a labelled corpus's id holds its folders: they are made
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / name, wave, sr, subtype="PCM_24")
        lines.append(f"{name}\t{row.emotion}")
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n")
    return folder / "labels.tsv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=Path("models"))
    ap.add_argument(
        "--corpus",
        type=Path,
        required=True,
        help="the folder the manifest's paths are relative to: a corpus folder the run ingested, or data/raw with "
        "--manifest data/manifest.csv",
    )
    ap.add_argument("--manifest", type=Path, help="the run's manifest (default: one built from --corpus in place)")
    ap.add_argument(
        "--index",
        type=Path,
        default=Path("data/features/index.csv"),
        help="featurize's index (its test split), or any CSV with a clip_id column, e.g. reports/predictions.csv",
    )
    ap.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS))
    ap.add_argument("--conditions", nargs="*", default=[], help="noise:SNR telephone reverb:RT60 level:DB, whole clips")
    ap.add_argument("--out", type=Path, default=Path("reports/length-eval"))
    args = ap.parse_args(argv)
    from bench.robustness_probe import parse_condition

    try:  # before the model is loaded
        for condition in args.conditions:
            parse_condition(condition)
    except ValueError as err:
        ap.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    from bench.ravdess_bench import host
    from ser.config import FeatureParams
    from ser.io import atomic_path, read_json, write_json
    from ser.serving.crosscorpus import evaluate_corpus

    features = FeatureParams(**read_json(args.model_dir / "preprocess.json")["features"])
    index = pd.read_csv(args.index, dtype={"clip_id": str})
    if "split" in index:  # featurize's index: the test split's original windows
        index = index[(index["split"] == "test") & (index["copy"] == 0)]
    if args.manifest:
        manifest = pd.read_csv(args.manifest, dtype={"clip_id": str})
    else:
        from ser.data.ingest import build_manifest

        manifest = build_manifest(args.corpus, workers=features.workers)
    manifest = manifest[["clip_id", "path", "emotion", "speaker"]]
    clips = index[["clip_id"]].drop_duplicates().merge(manifest, on="clip_id", how="left")
    if clips["path"].isna().any():
        raise SystemExit(
            f"{args.manifest}: no path for test clips {clips.loc[clips['path'].isna(), 'clip_id'].tolist()}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    rows = [(f"{s:g}s", s, None) for s in args.lengths] + [(c, features.duration, c) for c in args.conditions]
    for name, seconds, condition in rows:
        stem = args.out / name.replace(":", "_")  # noise:20 -> noise_20-metrics.json
        with tempfile.TemporaryDirectory() as tmp:
            labels = cut_clips(clips, args.corpus, Path(tmp), seconds, features, condition)
            m = evaluate_corpus(
                args.model_dir,
                Path(tmp),
                labels,
                Path(f"{stem}-metrics.json"),
                Path(f"{stem}-predictions.csv"),
                Path(f"{stem}-confusion.png"),
            )
        results[name] = {k: m[k] for k in ("accuracy", "uar", "macro_f1", "ece", "mean_confidence", "predicted_share")}
    command = " ".join(["python -m bench.length_eval", *(argv if argv is not None else sys.argv[1:])])
    speakers = sorted({str(s) for s in clips["speaker"]})
    res = {
        "command": command,
        "host": host(),
        "clips": len(clips),
        "speakers": speakers,
        **results,
    }
    write_json(args.out / "results.json", res)
    classes = list(next(iter(results.values()))["predicted_share"])
    lines = [
        f"# {args.model_dir} on its test clips cut short or under recording conditions",
        "",
        f"Command: `{command}`; {len(clips)} clips of speakers {', '.join(speakers)}.",
        "",
        "Predicted-class share in %, one column per class.",
        "",
        "| length or condition | accuracy | UAR | macro-F1 | ECE | " + " | ".join(classes) + " |",
        "| - | - | - | - | - | " + " | ".join("-" for _ in classes) + " |",
    ]
    for name, r in results.items():
        share = " | ".join(f"{100 * r['predicted_share'][c]:.0f}" for c in classes)
        lines.append(
            f"| {name} | {100 * r['accuracy']:.1f} | {100 * r['uar']:.1f} | {100 * r['macro_f1']:.1f} | "
            f"{r['ece']:.3f} | {share} |"
        )
    with atomic_path(args.out / "results.md") as tmp_md:
        tmp_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
