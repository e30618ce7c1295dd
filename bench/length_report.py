"""`bench.length_probe`'s numbers: each setting's means over folds per length, and its `results.md`.

results[name] = {**setting, "runs": runs, **summary(runs, classes)}
text = report(res, classes)
"""

from __future__ import annotations

from typing import Any

import numpy as np

LENGTHS = (1.0, 1.5, 2.0, 3.5)  # seconds of the window kept (3.5 = the whole window), in both length benches


def summary(runs: list[dict], classes: list[str]) -> dict:
    """Means and stds over runs per length and role; predicted shares averaged."""
    from bench.results import spread

    out: dict[str, Any] = {"val_uar_choice": spread([r["val_uar"] for r in runs])}
    for variant in runs[0]["lengths"]:
        for role in ("val", "test"):
            cell = [r["lengths"][variant][role] for r in runs]
            out[f"{role}_{variant}"] = {
                **{k: spread([c[k] for c in cell]) for k in ("accuracy", "uar", "macro_f1", "ece")},
                "predicted_share": {c: float(np.mean([x["predicted_share"][c] for x in cell])) for c in classes},
            }
    return out


def report(res: dict, classes: list[str]) -> str:
    """results.md: UAR per length (validation and test), accuracy, ECE and the predicted-class shares."""
    h = res["host"]
    lines = [
        "# Statistics head on Whisper-base states: short clips, masked padding, layer weighting",
        "",
        f"Command: `{res['command']}`  ",
        f"Commit {h['commit']}, {h['cpus']} CPUs ({h['cpu_model']}); {res['clips']} clips, 5 windows each "
        f"(1, 1.5, 2, 3.5 s and a random crop), encoding {res['encode_seconds']:.0f} s (0 when cached), "
        f"wall time {res['wall_seconds'] / 60:.1f} min. Protocol (a) folds; C (or L2) chosen on the validation "
        "speakers' full windows; mean ± std over folds (and seeds).",
        "",
        "| setting | val UAR 1 / 1.5 / 2 / 3.5 s | test UAR 1 / 1.5 / 2 / 3.5 s | test accuracy 3.5 s | "
        "test ECE 1.5 / 3.5 s |",
        "| - | - | - | - | - |",
    ]
    variants = [f"{s:g}s" for s in LENGTHS]
    for name, r in res["results"].items():
        val = " / ".join(f"{100 * r[f'val_{v}']['uar']['mean']:.1f}" for v in variants)
        test = " / ".join(f"{100 * r[f'test_{v}']['uar']['mean']:.1f}" for v in variants)
        full = r["test_3.5s"]
        lines.append(
            f"| {name} | {val} | {test} ± {100 * full['uar']['std']:.1f} | "
            f"{100 * full['accuracy']['mean']:.1f} ± {100 * full['accuracy']['std']:.1f} | "
            f"{r['test_1.5s']['ece']['mean']:.3f} / {full['ece']['mean']:.3f} |"
        )
    lines += [
        "",
        "Predicted-class share on the test speakers (%; each class is 1/8 = 12.5 % of RAVDESS but neutral, 6.7 %), "
        "at 1 s and 3.5 s:",
        "",
        "| setting | length | " + " | ".join(classes) + " |",
        "| - | - | " + " | ".join("-" for _ in classes) + " |",
    ]
    for name, r in res["results"].items():
        for v in ("1s", "3.5s"):
            share = r[f"test_{v}"]["predicted_share"]
            lines.append(f"| {name} | {v} | " + " | ".join(f"{100 * share[c]:.1f}" for c in classes) + " |")
    weighted = [r for r in res["results"].values() if r.get("weighted")]
    for r in weighted:
        mean_w = np.mean([run["layer_weights"] for run in r["runs"]], axis=0)
        lines += ["", "Learned layer weights, mean over runs (layers 0-6): " + ", ".join(f"{w:.3f}" for w in mean_w)]
    return "\n".join(lines) + "\n"
