"""Markdown tables for the cross-corpus matrix (see bench/crosscorpus_bench.py): test and validation UAR per
training set and test corpus, on the shared classes and on each corpus's own, predicted shares and cost."""

from __future__ import annotations

from bench.ravdess_report import row


def pct(s: dict) -> str:
    """`mean ± std` of a spread in percent (one decimal; no ± for a single run)."""
    return f"{100 * s['mean']:.1f}" + (f" ± {100 * s['std']:.1f}" if s["n"] > 1 else "")


def cell(entry: dict | None, kind: str) -> str:
    """`UAR (accuracy)` of one matrix cell, or a dash."""
    if not entry or kind not in entry:
        return "-"
    return f"{pct(entry[kind]['uar'])} ({100 * entry[kind]['accuracy']['mean']:.1f})"


def pick(cells: dict, role: str, corpus: str) -> dict | None:
    """A training set's cell: its test scores, or its validation scores (a corpus it did not train on: `select`)."""
    if role == "test":
        return cells.get("test", {}).get(corpus)
    return cells.get("val", {}).get(corpus) or cells.get("select", {}).get(corpus)


def matrix(res: dict, role: str, kind: str, title: str, note: str) -> list[str]:
    """One table: a row per training set, a column per corpus, `role` (test / validation) scores of `kind`."""
    names = [c["name"] for c in res["corpora"]]
    lines = [f"### {title}\n", note + "\n", row("trained on", *names), row(*["---"] * (len(names) + 1))]
    for key, t in res["trainings"].items():
        lines.append(row(key, *(cell(pick(t["cells"], role, n), kind) for n in names)))
    return lines + [""]


def shares(res: dict) -> list[str]:
    """The most-predicted class of each test cell and its share: a model flooding one class shows here."""
    names = [c["name"] for c in res["corpora"]]
    lines = ["### The most predicted class per test cell (own classes, whole answer)\n"]
    lines += [row("trained on", *names), row(*["---"] * (len(names) + 1))]
    for key, t in res["trainings"].items():
        out = []
        for n in names:
            entry = t["cells"].get("test", {}).get(n)
            if not entry:
                out.append("-")
                continue
            share = entry["own"]["predicted_share"]
            top = max(share, key=share.get)
            out.append(f"{top} {100 * share[top]:.0f} %")
        lines.append(row(key, *out))
    return lines + [""]


def markdown(res: dict) -> list[str]:
    """The whole results.md."""
    corpora = ", ".join(
        f"{c['name']} ({c['clips']} clips, {c['speakers']} speakers, {c['language'] or 'language unknown'})"
        for c in res["corpora"]
    )
    runs = next(iter(res["trainings"].values()))["runs"]
    folds, seeds = len({r["fold"] for r in runs}), len({r["seed"] for r in runs})
    lines = [
        "## Cross-corpus matrix\n",
        f"`{res['command']}` ({res['head']} head; commit {res['host']['commit']}, {res['host']['cpus']} CPUs, "
        f"{res['wall_seconds'] / 60:.1f} min).\n",
        f"Corpora: {corpora}. {folds} speaker folds x {seeds} seed(s); "
        f"shared classes: {', '.join(res['shared_classes'])}.\n",
        "Cells: UAR mean ± std over folds and seeds in %, accuracy in brackets.\n",
    ]
    lines += matrix(
        res,
        "test",
        "shared",
        "Test speakers, shared classes",
        "Every test corpus's clips of the shared classes; the answer restricted to them.",
    )
    lines += matrix(
        res,
        "test",
        "own",
        "Test speakers, each corpus's own classes",
        "All the test corpus's clips; UAR over the classes it has; the model answers any class it knows.",
    )
    if any("four" in e for t in res["trainings"].values() for e in t["cells"].get("test", {}).values()):
        lines += matrix(
            res,
            "test",
            "four",
            "Test speakers, neutral / happy / sad / angry",
            "The clips of these four classes, the answer restricted to them: the estimate for a 4-class corpus.",
        )
    lines += matrix(
        res,
        "val",
        "shared",
        "Validation speakers, shared classes (what a lever's rule reads)",
        "A corpus the model trained on: its validation speakers (chose C); one it did not: its validation "
        "speakers, scored only.",
    )
    lines += shares(res)
    lines += ["### Cost\n", row("trained on", "classes", "training s (median per run)"), row("---", "---", "---")]
    for key, t in res["trainings"].items():
        lines.append(row(key, len(t["classes"]), f"{t['train_seconds_median']:.0f}"))
    lines.append(
        f"\nFeatures of every corpus (measure, window, augment, encode; cached): {res['prepare_seconds']:.0f} s."
    )
    return lines
