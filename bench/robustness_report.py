"""`bench.robustness_probe`'s numbers: means over folds per condition and head, the sentence gap, and `results.md`.

res["heads"][name] = {"folds": rows, **summary(rows, classes)}
res["sentence"] = {"folds": rows, **summary(rows, classes, roles=("same", "other"))}
lines = report(res, classes)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def cell(scores: list[dict], classes: list[str]) -> dict:
    """Mean and std over folds of accuracy, UAR and ECE; the predicted-class share averaged."""
    from bench.results import spread

    return {
        **{k: spread([s[k] for s in scores]) for k in ("accuracy", "uar", "ece")},
        "predicted_share": {c: float(np.mean([s["predicted_share"][c] for s in scores])) for c in classes},
    }


def summary(rows: list[dict], classes: list[str], roles: tuple[str, ...] | None = None) -> dict:
    """A head's rows -> `{role}_{condition}` cells and `val_uar_all`; with `roles`, one cell per role key."""
    from bench.results import spread

    if roles is not None:
        return {role: cell([r[role] for r in rows], classes) for role in roles}
    out: dict[str, Any] = {"val_uar_all": spread([r["val_uar_all"] for r in rows])}
    for condition in rows[0]["conditions"]:
        for role in ("val", "test"):
            out[f"{role}_{condition}"] = cell([r["conditions"][condition][role] for r in rows], classes)
    return out


def pct(c: dict, key: str, std: bool = False) -> str:
    """A cell's mean (and std) in percent."""
    mean = f"{100 * c[key]['mean']:.1f}"
    return f"{mean} ± {100 * c[key]['std']:.1f}" if std else mean


def report(res: dict, classes: list[str]) -> list[str]:
    """results.md: each condition under both heads, the heads' choice, predicted shares and the sentence gap."""
    h, heads = res["host"], res["heads"]
    lines = [
        "# Statistics head on Whisper-base states: recording conditions and the unheard sentence",
        "",
        f"Command: `{res['command']}`  ",
        f"Commit {h['commit']}, {h['cpus']} CPUs ({h['cpu_model']}); {res['clips']} clips, layers "
        f"{res['layers']}, "
        + ("" if res.get("level_db") is None else f"every window scaled to {res['level_db']:g} dBFS gated level, ")
        + f"encoding {res['encode_seconds']:.0f} s (0 when cached), wall time "
        f"{res['wall_seconds'] / 60:.1f} min. Protocol (a) folds; C chosen on the validation speakers' clean windows; "
        "mean ± std over folds.",
        "",
        "| condition | " + " | ".join(f"{n}: val UAR | test accuracy | test UAR | test ECE" for n in heads) + " |",
        "| - | " + " | ".join("- | - | - | -" for _ in heads) + " |",
    ]
    for condition in res["conditions"]:
        row = []
        for r in heads.values():
            val, test = r[f"val_{condition}"], r[f"test_{condition}"]
            row.append(
                f"{pct(val, 'uar')} | {pct(test, 'accuracy')} | {pct(test, 'uar', True)} | {test['ece']['mean']:.3f}"
            )
        lines.append(f"| {condition} | " + " | ".join(row) + " |")
    choice = {n: r["val_uar_all"]["mean"] for n, r in heads.items()}
    lines += [
        "",
        "Mean validation UAR over clean and every condition (decides): "
        + ", ".join(f"{n} {100 * v:.1f} %" for n, v in choice.items())
        + f"; chosen: **{max(choice, key=lambda n: choice[n])}**.",
        "",
        "Predicted-class share on the test speakers (%; each class is 1/8 = 12.5 % of RAVDESS but neutral, 6.7 %):",
        "",
        "| head | condition | " + " | ".join(classes) + " |",
        "| - | - | " + " | ".join("-" for _ in classes) + " |",
    ]
    for name, r in heads.items():
        for condition in res["conditions"]:
            share = r[f"test_{condition}"]["predicted_share"]
            lines.append(f"| {name} | {condition} | " + " | ".join(f"{100 * share[c]:.1f}" for c in classes) + " |")
    s = res["sentence"]
    lines += [
        "",
        "The unheard sentence: the clean head fitted on one sentence's clips (both ways round, C on the validation "
        "speakers' clips of it), scored on the test speakers' clips of the same sentence and of the other:",
        "",
        "| test clips | accuracy | UAR | ECE |",
        "| - | - | - | - |",
    ]
    for role, label in (("same", "the sentence fitted on"), ("other", "the other sentence")):
        c = s[role]
        lines.append(f"| {label} | {pct(c, 'accuracy', True)} | {pct(c, 'uar', True)} | {c['ece']['mean']:.3f} |")
    return lines
