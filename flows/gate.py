"""The release gate: absolute thresholds plus champion/challenger, and its published record.

The candidate passes when it meets every `evaluate.gates` threshold and, when a champion
(the last accepted model, `reports/champion.json`) was scored on the same test split, its
UAR trails the champion's by at most `evaluate.champion_tolerance`. A champion scored on
another split (its hash of sorted test clip ids differs) is shown but not compared.
The decision goes to `reports/gate.json` (read by the `package` stage) and to Prefect
artifacts: a markdown table (metric, candidate, threshold, champion) and the confusion matrix.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ser.config import EvaluateParams
from ser.io import write_json
from ser.training.evaluate import check_gates

GATE_FILE = "reports/gate.json"
CHAMPION_FILE = "reports/champion.json"
COMPARED = ("uar",)  # metrics the candidate may not trail the champion on by more than the tolerance
SHOWN = ("accuracy", "uar", "macro_f1", "min_class_recall")


class GateRejected(RuntimeError):
    """The candidate model failed the gate; the message lists the reasons."""


def split_id(predictions: Path) -> str:
    """Identity of the test split: sha256 of its sorted, unique clip ids."""
    clip_ids = sorted(set(pd.read_csv(predictions, dtype={"clip_id": str})["clip_id"]))
    return "sha256:" + hashlib.sha256("\n".join(clip_ids).encode()).hexdigest()


def decide(metrics: dict, params: EvaluateParams, champion: dict | None, candidate: dict) -> dict:
    """The gate record: `accepted`, `reasons` (failures, or why it passed), `notes` and inputs."""
    failures = check_gates(metrics, params.gates)
    notes = []
    if champion is None:
        notes.append("no champion yet: absolute gates only")
    elif champion.get("split_id") != candidate["split_id"]:
        notes.append(
            f"champion was scored on another test split ({champion.get('split_id')}, candidate "
            f"{candidate['split_id']}): absolute gates only"
        )
    else:
        for key in COMPARED:
            best = champion["metrics"][key]
            if metrics[key] < best - params.champion_tolerance:
                failures.append(
                    f"champion: {key} {metrics[key]:.3f} trails the champion's {best:.3f} by more "
                    f"than evaluate.champion_tolerance {params.champion_tolerance:.3f}"
                )
    return {
        "accepted": not failures,
        "reason": "; ".join(failures) or "every gate passed",  # one line, for ser.serving.package's refusal
        "reasons": failures or ["every gate passed"],
        "notes": notes,
        "metrics": {k: metrics[k] for k in SHOWN},
        "thresholds": params.gates.model_dump() | {"champion_tolerance": params.champion_tolerance},
        "candidate": candidate,
        "champion": champion,
    }


def champion_record(decision: dict, metrics: dict, commit: str, run_id: str | None) -> dict:
    """What reports/champion.json keeps about an accepted model."""
    return decision["candidate"] | {
        "metrics": {k: metrics[k] for k in SHOWN} | {"per_class": metrics.get("per_class", {})},
        "commit": commit,
        "flow_run_id": run_id,
        "accepted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def save(repo: Path, decision: dict, champion: dict | None) -> None:
    """Write gate.json; on acceptance of a new model also replace champion.json."""
    write_json(repo / GATE_FILE, decision)
    if champion is not None:
        old = read_champion(repo)
        if old is None or old.get("model_md5") != champion["model_md5"] or old["metrics"] != champion["metrics"]:
            write_json(repo / CHAMPION_FILE, champion)


def read_champion(repo: Path) -> dict | None:
    """The accepted model's record, or None before the first acceptance."""
    path = repo / CHAMPION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def gate_markdown(decision: dict) -> str:
    """The decision as markdown: verdict, metrics vs thresholds vs champion, reasons."""
    champ = (decision["champion"] or {}).get("metrics", {})
    th = decision["thresholds"]
    lines = [
        f"## Gate: {'ACCEPTED' if decision['accepted'] else 'REJECTED'}",
        "",
        "| metric | candidate | threshold | champion | allowed (champion - tolerance) |",
        "|---|---|---|---|---|",
    ]
    for key, value in decision["metrics"].items():
        floor = th.get(f"min_{key}")
        best = champ.get(key)
        allowed = f"{best - th['champion_tolerance']:.3f}" if best is not None and key in COMPARED else "-"
        lines.append(
            f"| {key} | {value:.3f} | {'-' if floor is None else f'{floor:.3f}'} | "
            f"{'-' if best is None else f'{best:.3f}'} | {allowed} |"
        )
    lines += ["", "**Reasons**", *[f"- {r}" for r in decision["reasons"]]]
    lines += [f"- note: {n}" for n in decision["notes"]]
    return "\n".join(lines) + "\n"


def confusion_rows(predictions: Path, classes: list[str]) -> list[dict]:
    """Confusion matrix rows (actual class, then counts per predicted class) from predictions.csv."""
    pred = pd.read_csv(predictions)
    table = pd.crosstab(pred["actual"], pred["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    return [{"actual": c, **{p: int(table.loc[c, p]) for p in classes}} for c in classes]
