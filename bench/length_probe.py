"""Short clips, masked padding and layer weighting for the statistics head on frozen Whisper-base states (issue 29).

RAVDESS's windows are 3.5 s of speech; users (and other corpora) send shorter clips, which the serving path
zero-pads to the window. Whisper's encoder turns that padding into states as large as speech's, and the
statistics head's mean and std then describe the padding as much as the voice. This bench measures, on the
benchmark's protocol (a) folds (on RAVDESS, 6 x 4 test speakers, 2 validation speakers per fold), the levers of
issue 29 that a linear head on pooled states can show in minutes rather than hours:

- `masked`: the mean and std over the frames that hold audio only (`valid_frames`);
- `crops`: the training speakers' clips also as one random sub-window each (1-3.5 s, random start, seeded by
  clip id), so the head sees short clips too;
- `weighted`: softmax weights over all 7 encoder layers' statistics, learned with the head (SUPERB's layer
  weighting, here on pooled statistics), against the fixed layers 3-4.

Every clip's window (`features.offset`, `features.duration`) is also cut to 1, 1.5 and 2 s (the window's first
L seconds, zero-padded as serving pads a short upload), encoded once and cached. Each setting's C (and the
weighted head's L2) is chosen on the validation speakers' full windows; the test speakers are scored at each
length, with the expected calibration error and the predicted-class histogram per fold.

    .venv/bin/python -m bench.length_probe --out reports/length-probe

Writes `results.md` and `results.json` under --out; without the corpus it prints `skipped: ...` and exits 0.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.length_report import LENGTHS
from ser.data.clips import clip_seed

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = (*(f"{s:g}s" for s in LENGTHS), "crop")
LAYERS = 7  # Whisper-base: the convolutions' output and 6 blocks
INDEX = ("clip_id", "corpus", "speaker", "gender", "emotion")  # the clip index kept in the cache
CROP_MIN_S = 1.0  # the shortest crop; the longest is the whole window
log = logging.getLogger("length_probe")


def cut(wave: np.ndarray, seconds: float, sample_rate: int) -> np.ndarray:
    """The window's first `seconds`, zero-padded back to the window's length."""
    out = np.zeros_like(wave)
    keep = min(len(wave), round(seconds * sample_rate))
    out[:keep] = wave[:keep]
    return out


def valid_frames(samples: np.ndarray, frames: int) -> np.ndarray:
    """Encoder states per window that see audio, for windows holding `samples` samples before their zero padding.

    One state per 2 mel frames (320 samples); at least 1 (a silent window keeps one state), at most `frames`.
    """
    from ser.features.whisper import HOP_LENGTH

    return np.clip(-(-np.asarray(samples, np.int64) // (2 * HOP_LENGTH)), 1, frames)


def random_crop(wave: np.ndarray, clip_id: str, sample_rate: int, seed: int = 29) -> np.ndarray:
    """The pipeline's `augment.crop` sub-window (1 s up to the window), drawn from a generator seeded by clip id."""
    from ser.data.augment import sub_window

    return sub_window(wave, sample_rate, CROP_MIN_S, np.random.default_rng([seed, clip_seed(clip_id)]))


def pooled_variants(corpus_dir: Path, params, cache: Path) -> tuple[dict[str, np.ndarray], Any]:
    """{variant: (clips, 2 maskings, 7 layers, 2 x 512)} pooled statistics, and the clip index; cached in `cache`."""

    from bench.protocols import usable_clips
    from bench.results import load_pooled, save_pooled
    from ser.audio import audio_length
    from ser.config import FeatureParams
    from ser.data.featurize import window_clips
    from ser.data.ingest import build_manifest
    from ser.features import extract
    from ser.features.whisper import WIDTH
    from ser.training.stats_head import clip_stats

    if (cached := load_pooled(cache, list(VARIANTS), INDEX)) is not None:
        return cached
    clips, _ = usable_clips(build_manifest(corpus_dir, workers=params.features.workers))
    index, waves = window_clips(clips, corpus_dir, np.zeros(len(clips), int), params.features, params.augment)
    sr = params.features.sample_rate
    every = FeatureParams(**{**params.features.model_dump(), "kind": "whisper_base", "whisper_layers": list(range(7))})
    out = {}
    for variant in VARIANTS:
        started = time.perf_counter()
        if variant == "crop":
            cut_waves = [random_crop(w, c, sr) for w, c in zip(waves, index["clip_id"], strict=True)]
        else:
            cut_waves = [cut(w, float(variant[:-1]), sr) for w in waves]
        pooled = np.empty((len(waves), 2, LAYERS, 2 * WIDTH), np.float32)
        for start in range(0, len(waves), 64):
            batch = np.stack(cut_waves[start : start + 64])
            states = extract(batch, every)  # (clips, frames, 7 * WIDTH)
            frames = valid_frames(np.array([audio_length(w) for w in batch]), states.shape[1])
            for i, n in enumerate(frames):
                for layer in range(LAYERS):
                    s = states[i : i + 1, :, layer * WIDTH : (layer + 1) * WIDTH]
                    pooled[start + i, 0, layer] = clip_stats(s)[0]
                    pooled[start + i, 1, layer] = clip_stats(s[:, :n])[0]
        out[variant] = pooled
        log.info("encoded %s: %d windows in %.0f s", variant, len(waves), time.perf_counter() - started)
    return out, save_pooled(cache, out, index, INDEX)


SETTINGS: dict[str, dict[str, Any]] = {
    "layers 3-4 (today's head)": {"layers": [3, 4], "masked": False, "crops": False},
    "layers 3-4, masked": {"layers": [3, 4], "masked": True, "crops": False},
    "layers 3-4, crops": {"layers": [3, 4], "masked": False, "crops": True},
    "layers 3-4, masked + crops": {"layers": [3, 4], "masked": True, "crops": True},
    "layers 3-4, crops for half the clips": {"layers": [3, 4], "masked": False, "crops": 0.5},
    "weighted 0-6, masked + crops": {"layers": list(range(LAYERS)), "masked": True, "crops": True, "weighted": True},
}
WEIGHT_L2 = (1e-4, 1e-3, 1e-2)  # the weighted head's L2 on its classifier, chosen on validation UAR
WEIGHT_EPOCHS = 60


def fit_weighted(x_train, y_train, x_val, y_val, n_classes: int, seed: int):
    """Softmax layer weights over (clips, layers, stats) and a softmax classifier on the weighted sum.

    Inputs standardised per layer and statistic on the training rows; the L2 from `WEIGHT_L2` with the best
    validation UAR. Returns (predict(x) -> probabilities, report).
    """
    import keras
    from sklearn.metrics import recall_score

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6

    @keras.saving.register_keras_serializable(package="bench")
    class LayerWeights(keras.layers.Layer):
        def build(self, input_shape):
            self.logits = self.add_weight(shape=(input_shape[1],), initializer="zeros", name="logits")

        def call(self, x):
            w = keras.ops.softmax(self.logits)
            return keras.ops.einsum("blc,l->bc", x, w)

    fits = []
    for l2 in WEIGHT_L2:
        keras.utils.set_random_seed(seed)
        inputs = keras.Input(x_train.shape[1:])
        pooled = LayerWeights(name="layer_weights")(inputs)
        outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(l2))(
            keras.layers.Dropout(0.2)(pooled)
        )
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit((x_train - mean) / std, y_train, epochs=WEIGHT_EPOCHS, batch_size=64, verbose=0, shuffle=True)
        pred = model.predict((x_val - mean) / std, verbose=0).argmax(1)
        fits.append((float(recall_score(y_val, pred, average="macro")), l2, model))
    uar, l2, model = max(fits, key=lambda f: f[0])
    weights = keras.ops.convert_to_numpy(keras.ops.softmax(model.get_layer("layer_weights").logits))
    report = {"L2": l2, "val_uar": uar, "layer_weights": [round(float(w), 4) for w in weights]}
    return (lambda x: model.predict((x - mean) / std, verbose=0)), report


def run_setting(setting: dict, pooled: dict[str, np.ndarray], y: np.ndarray, folds: list[dict], classes, seed: int):
    """Per fold: fit on the training speakers (full windows, plus crops), choose on validation, score each length."""
    from ser.training.evaluate import calibration, score
    from ser.training.stats_head import fit_linear

    mask, layers = int(setting["masked"]), setting["layers"]

    def rows(variant: str, where: np.ndarray) -> np.ndarray:
        x = pooled[variant][where, mask][:, layers]
        return x if setting.get("weighted") else x.reshape(len(x), -1)

    out = []
    for fold in folds:
        tr, va, te = fold["train"], fold["val"], fold["test"]
        x_tr, y_tr = rows("3.5s", tr), y[tr]
        if setting["crops"]:  # True: every training clip's crop; a fraction: a fixed random share of them
            share = np.random.default_rng(29).random(len(y)) < float(setting["crops"])
            x_tr, y_tr = np.concatenate([x_tr, rows("crop", tr & share)]), np.concatenate([y_tr, y[tr & share]])
        if setting.get("weighted"):
            predict, report = fit_weighted(x_tr, y_tr, rows("3.5s", va), y[va], len(classes), seed)
        else:
            scaler, classifier, report = fit_linear(x_tr, y_tr, rows("3.5s", va), y[va])
            report = {k: report[k] for k in ("C", "val_uar")}

            def predict(x, scaler=scaler, classifier=classifier):
                probs = np.zeros((len(x), len(classes)))
                probs[:, classifier.classes_] = classifier.predict_proba(scaler.transform(x))
                return probs

        by_length = {}
        for length in LENGTHS:
            variant = f"{length:g}s"
            scores = {}
            for role, where in (("val", va), ("test", te)):
                probs = predict(rows(variant, where))
                s = score(y[where], probs.argmax(1), classes) | calibration(probs, y[where], classes)
                scores[role] = {k: s[k] for k in ("accuracy", "uar", "macro_f1", "ece", "predicted_share")}
            by_length[variant] = scores
        out.append({"fold": fold["fold"], "seed": seed, **report, "lengths": by_length})
        log.info(
            "fold %d seed %d: val UAR %.3f, test UAR %s",
            fold["fold"],
            seed,
            report["val_uar"],
            " ".join(f"{v}={by_length[v]['test']['uar']:.3f}" for v in by_length),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.results import corpus_missing, probe_parser

    ap = probe_parser(__doc__ or "", "length-probe")
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the weighted head (the linear fits are exact)")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "bench" / "length-probe.npz")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), help="names from SETTINGS")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if corpus_missing(args.corpus):
        return 0
    from bench.length_report import report, summary
    from bench.protocols import row_folds
    from bench.ravdess_bench import host
    from ser.config import load_params
    from ser.io import write_json

    params = load_params(args.params)
    start = time.perf_counter()
    pooled, index = pooled_variants(args.corpus, params, args.cache)
    encode_s = time.perf_counter() - start
    classes = params.data.class_set(index["emotion"])
    y = index["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    folds = row_folds(index, params, args.folds)
    results = {}
    for name in args.settings:
        setting, began = SETTINGS[name], time.perf_counter()
        seeds = range(args.seeds) if setting.get("weighted") else range(1)
        runs = [r for seed in seeds for r in run_setting(setting, pooled, y, folds, classes, seed)]
        results[name] = {**setting, "runs": runs, **summary(runs, classes), "seconds": time.perf_counter() - began}
    command = " ".join(["python -m bench.length_probe", *(argv if argv is not None else sys.argv[1:])])
    res = {"command": command, "host": host(), "clips": len(y), "encode_seconds": encode_s, "results": results}
    res["wall_seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", res)
    text = report(res, classes)  # bench.length_report
    tmp = args.out / "results.md.tmp"
    tmp.write_text(text)
    tmp.replace(args.out / "results.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
