"""A benchmark run's numbers: mean and spread over folds and seeds, seed ensembles, saved probabilities; and the
command-line arguments and corpus check the probes over protocol (a)'s folds share.

`ravdess_bench` scores its runs with these; `parallel_bench`, `fuse_probs` and `whisper_probe`
read and combine the `probs.npz` files they write.

    summary = summarise(runs, classes)
    save_probs(runs, out / "probs.npz")
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("accuracy", "uar", "macro_f1")
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "ravdess-speech-16k"


def probe_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """A probe's parser (its module docstring's first paragraph) with --corpus, --params, --folds and --out."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / out)
    return ap


def corpus_missing(corpus: Path) -> bool:
    """True, after printing the benchmarks' `skipped:` line, when the corpus is absent (a fresh clone's case)."""
    if corpus.is_dir():
        return False
    print(f"skipped: the RAVDESS corpus is not at {corpus} (pass --corpus DIR; see README 'Benchmark')")
    return True


def spread(values: list[float]) -> dict:
    """Mean, standard deviation (sample, 0 for one value), min, max and count."""
    v = np.asarray(values, float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": len(v),
    }


def summarise(runs: list[dict], classes: list[str]) -> dict:
    """Mean ± std over runs of the test metrics and per-class recall, the classes, the seed ensemble, the run table."""
    out: dict[str, Any] = {m: spread([r["test"][m] for r in runs]) for m in METRICS}
    out["classes"] = list(classes)  # what the probabilities' columns are (`data.classes` may be [], the union)
    out["val_uar"] = spread([r["val"]["uar"] for r in runs])
    if all("select" in r for r in runs):  # speakers held out of training and stopping: the unbiased comparison
        out["select_uar"] = spread([r["select"]["uar"] for r in runs])
    out["per_class_recall"] = {
        c: spread([r["test"]["per_class"][c]["recall"] for r in runs if r["test"]["per_class"][c]["support"]])
        for c in classes
        if any(r["test"]["per_class"][c]["support"] for r in runs)
    }
    if all("ece" in r["test"] for r in runs):  # calibration and class balance (ser.training.evaluate.calibration)
        out["test_ece"] = spread([r["test"]["ece"] for r in runs])
        out["predicted_share"] = {c: float(np.mean([r["test"]["predicted_share"][c] for r in runs])) for c in classes}
    if all("parts" in r for r in runs):  # model.stats_head: each averaged model alone
        out["parts"] = {
            name: {
                "val_uar": spread([r["parts"][name]["val"]["uar"] for r in runs]),
                **{f"test_{m}": spread([r["parts"][name]["test"][m] for r in runs]) for m in METRICS},
            }
            for name in runs[0]["parts"]
        }
    ensemble = seed_ensemble(runs, classes)
    if ensemble:  # several seeds per fold: also the score of the mean of their probabilities
        out["seed_ensemble"] = ensemble
    out["runs"] = [
        {
            k: r[k]
            for k in (
                "fold",
                "seed",
                "test_speakers",
                "val_speakers",
                "select_speakers",
                "epochs_run",
                "best_epoch",
                "params",
                "train_windows",
                "layer_weights",
            )
            if k in r
        }
        | {
            "train_seconds": round(r["train_seconds"], 1),
            **{f"test_{m}": r["test"][m] for m in METRICS},
            "val_uar": r["val"]["uar"],
        }
        | ({"select_uar": r["select"]["uar"]} if "select" in r else {})
        | ({"stats_head_C": r["stats_head"]["C"]} if "stats_head" in r else {})
        for r in runs
    ]
    return out


def seed_ensemble(runs: list[dict], classes: list[str], role: str = "test") -> dict | None:
    """Score each fold's mean of its runs' probabilities (one setting, several seeds): mean ± std over folds.

    Args:
        runs: records with `fold` and `<role>_probs`/`<role>_y` (from `run_split` or `load_probs`).
        role: "test" or "select".

    Returns:
        {metric: spread over folds}, or None when no fold has more than one run.

    Raises:
        ValueError: when a fold's runs scored different clips, so their probabilities do not line up.
    """
    from ser.training.evaluate import score

    folds = sorted({r["fold"] for r in runs})
    if len(runs) <= len(folds):
        return None
    scores = []
    for f in folds:
        group = [r for r in runs if r["fold"] == f]
        labels = [r[f"{role}_y"] for r in group]
        if any(not np.array_equal(labels[0], y) for y in labels[1:]):
            raise ValueError(
                f"fold {f}: its runs scored different {role} clips (other folds, speakers or corpora?); "
                "their probabilities cannot be averaged"
            )
        probs = np.mean([r[f"{role}_probs"] for r in group], axis=0)
        scores.append(score(labels[0], probs.argmax(1), classes))
    return {m: spread([s[m] for s in scores]) for m in METRICS}


def save_probs(runs: list[dict], path: Path) -> None:
    """Each run's test (and selection) probabilities and labels, as `path` (.npz, replaced atomically).

    Seeds run as separate processes (`parallel_bench.py`) are averaged from these files afterwards.
    """
    from ser.io import atomic_path

    arrays = {
        f"f{r['fold']}-s{r['seed']}-{key}": r[key]
        for r in runs
        for key in ("test_probs", "test_y", "select_probs", "select_y")
        if key in r
    }
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez_compressed(fh, **arrays)


def load_probs(path: Path) -> list[dict]:
    """The run records `save_probs` wrote: fold, seed and the probability/label arrays."""
    runs: dict[tuple[int, int], dict] = {}
    with np.load(path) as data:
        for name in data.files:
            fold, seed, key = name.split("-", 2)
            run = runs.setdefault((int(fold[1:]), int(seed[1:])), {"fold": int(fold[1:]), "seed": int(seed[1:])})
            run[key] = data[name]
    return list(runs.values())


def write_reports(out: Path, res: dict, lines: list[str]) -> None:
    """A benchmark's `results.json` (`res`) and `results.md` (`lines`) under `out`, each replaced atomically;
    the markdown is printed too."""
    from ser.io import atomic_path, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", res)
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def load_pooled(cache: Path, names: list[str], columns: tuple[str, ...]) -> tuple[dict[str, np.ndarray], Any] | None:
    """A probe's cached statistics (`save_pooled`): {name: array} and the clip index `columns`; None when not
    cached, or cached without one of them (an older cache: it is encoded again)."""
    import pandas as pd

    if not cache.is_file():
        return None
    with np.load(cache, allow_pickle=False) as data:
        if not {*names, *(f"idx_{k}" for k in columns)} <= set(data.files):
            return None
        return {v: data[v] for v in names}, pd.DataFrame({k: data[f"idx_{k}"] for k in columns})


def save_pooled(cache: Path, pooled: dict[str, np.ndarray], index: Any, columns: tuple[str, ...]) -> Any:
    """Write a probe's statistics and the index `columns` to `cache` (temp file, then rename); the index as str
    (a missing value, such as an unknown gender, as "")."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    text = index[list(columns)].astype(object).fillna("").astype(str)
    arrays = {**pooled, **{f"idx_{k}": text[k].to_numpy().astype(str) for k in columns}}
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(cache)
    return text


def corpus_scores(probs: np.ndarray, y: np.ndarray, corpus: np.ndarray, classes: list[str]) -> dict:
    """Scores of each corpus's rows (UAR and macro-F1 over the classes it has)."""
    from ser.training.evaluate import calibration, score

    return {
        str(c): score(y[corpus == c], probs[corpus == c].argmax(1), classes)
        | calibration(probs[corpus == c], y[corpus == c], classes)
        for c in np.unique(corpus)
    }


def layer_weights(model) -> list[list[float]]:
    """`model.layer_weighting`: each CNN-LSTM's learned softmax weights over the encoder layers ([] without)."""
    from ser.training.model import LayerMix

    models = [model, *(layer for layer in model.layers if hasattr(layer, "layers"))]
    return [
        layer.weights_by_layer().round(4).tolist() for m in models for layer in m.layers if isinstance(layer, LayerMix)
    ]
