"""`bench.calibration_bench`'s settings, rule and report: the methods, sizes and skews it measures, the method (and
the head's share) its rule picks on the validation speakers of the corpus a model did not train on, the tables.

    res["choice"] = choose(res["summary"])
    lines = markdown(res)
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHODS: dict[str, dict[str, Any]] = {
    "mean": {"shrink": 0.0, "scale_too": False},
    "mean-shrunk": {"shrink": 10.0, "scale_too": False},
    "mean-scale-shrunk": {"shrink": 10.0, "scale_too": True},
}
# The whole model only: the calibrated head's share of the answer, with the method `mean-shrunk`.
SHARES: dict[str, dict[str, Any]] = {
    "mean-shrunk-share0.75": {"shrink": 10.0, "scale_too": False, "share": 0.75},
    "mean-shrunk-share1": {"shrink": 10.0, "scale_too": False, "share": 1.0},
}
SIZES = (10, 30, 100)
SKEWS = {"balanced": (), "one": ("neutral",), "two": ("neutral", "sad")}


def choose(table: dict) -> dict:
    """The rule: best mean `select` UAR over SIZES on balanced draws, both directions; then the 2-point check."""

    def get(train, corpus, method, n, skew):
        return table.get("|".join(map(str, (train, corpus, "select", method, n, skew))), {}).get("own", {}).get("mean")

    cross = sorted({(k.split("|")[0], k.split("|")[1]) for k in table if k.split("|")[2] == "select"})
    present = [m for m in {**METHODS, **SHARES} if any(f"|select|{m}|" in k for k in table)]
    means = {}
    for m in present:
        vals = [v for t, c in cross for n in SIZES if (v := get(t, c, m, n, "balanced")) is not None]
        means[m] = float(np.mean(vals)) if vals else float("nan")
    worst = {
        m: min(get(t, c, m, n, s) - get(t, c, "plain", 0, "none") for t, c in cross for n in SIZES for s in SKEWS)
        for m in present
    }
    best = max(METHODS, key=lambda m: means[m])
    chosen = best
    if worst[best] < -0.02:  # not safe: the same estimate with the larger shrink
        shrunk = [m for m, h in METHODS.items() if h["scale_too"] == METHODS[best]["scale_too"] and h["shrink"] > 0]
        chosen = max(shrunk, key=lambda m: METHODS[m]["shrink"]) if shrunk else best
    out = {"select_uar": means, "worst_vs_plain": worst, "best": best, "chosen": chosen}
    shares = [m for m in SHARES if m in present]
    if shares:  # the whole model: the calibrated head's share, the model's own unless another is 0.5 points better
        top = max(shares, key=lambda m: means[m])
        out["share_chosen"] = top if means[top] > means["mean-shrunk"] + 0.005 else "mean-shrunk"
    return out


def markdown(res: dict) -> list[str]:
    what = f"the whole model, folds of {res['runs']}" if res.get("runs") else "statistics head"
    table, lines = res["summary"], [f"# Domain calibration ({what}), `{res['command']}`", ""]
    choice = res["choice"]
    lines += [
        f"Rule's choice: **{choice['chosen']}** (best on select: {choice['best']}; select UAR by method "
        + ", ".join(f"{m} {v:.3f}" for m, v in res["choice"]["select_uar"].items())
        + "; worst select drop vs plain: "
        + ", ".join(f"{m} {v:+.3f}" for m, v in res["choice"]["worst_vs_plain"].items())
        + ")"
        + (f"; the head's share: **{choice['share_chosen']}**" if "share_chosen" in choice else ""),
        "",
    ]
    methods = list(choice["select_uar"])
    cells = sorted({tuple(k.split("|")[:3]) for k in table})
    for kind in ("own", "four"):
        lines += [
            f"## UAR ({kind}: "
            + (
                "the corpus's classes, the model's whole answer)"
                if kind == "own"
                else "neutral/happy/sad/angry, answer restricted)"
            ),
            "",
        ]
        lines += [
            "| train → test | role | N | skew | plain | " + " | ".join(methods) + " |",
            "|---|---|---|---|---|" + "---|" * len(methods),
        ]
        for t, c, r in cells:
            plain = table.get(f"{t}|{c}|{r}|plain|0|none", {}).get(kind)
            if plain is None:
                continue
            for n in SIZES:
                for s in SKEWS:
                    vals = [table.get(f"{t}|{c}|{r}|{m}|{n}|{s}", {}).get(kind, {}).get("mean") for m in methods]
                    lines.append(
                        f"| {t} → {c} | {r} | {n} | {s} | {plain['mean']:.3f} | "
                        + " | ".join(f"{v:.3f}" if v is not None else "–" for v in vals)
                        + " |"
                    )
        lines.append("")
    chosen = res["choice"]["chosen"]
    flagged = {
        (n, skew): [
            v["one_sided"]["mean"] for k, v in table.items() if k.endswith(f"|{chosen}|{n}|{skew}") and "one_sided" in v
        ]
        for n in SIZES
        for skew in SKEWS
    }
    if any(flagged.values()):
        lines += [
            f"## Sets reported one-sided (`{chosen}`: the calibrated answers on the set, one class over "
            f"{res['one_sided_share']:.0%}), share of draws over every cell",
            "",
            "| N | " + " | ".join(SKEWS) + " |",
            "|---|" + "---|" * len(SKEWS),
        ]
        for n in SIZES:
            lines.append(f"| {n} | " + " | ".join(f"{np.mean(flagged[n, s]):.2f}" for s in SKEWS) + " |")
        lines.append("")
    return lines
