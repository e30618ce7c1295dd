"""Markdown tables for the RAVDESS benchmark's results (see bench/ravdess_bench.py).

Also renders results.json files written before speakers replaced actors (their runs' `test_actors` and the like).
"""

from __future__ import annotations

from ser.labels import EMOTIONS

METRICS = ("accuracy", "uar", "macro_f1")
ANCHORS = """Anchors (published, same protocols):
- (a) speaker-independent RAVDESS, EmoBox benchmark, frozen self-supervised models: WavLM-large 72.2 % accuracy,
  Whisper-large-v3 75.9 % accuracy; a from-scratch ResLSTM: 62-65 % UAR.
- (b) the article's CNN-LSTM, 7 classes, random 80/20 split (speakers leak): 73 % accuracy."""


def pm(s: dict, scale: float = 100) -> str:
    """`mean ± std` of a spread, in percent by default."""
    return f"{s['mean'] * scale:.1f} ± {s['std'] * scale:.1f}"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def speakers(run: dict, role: str, default: str = "") -> str:
    """A run's `role` speakers ("test", "val", "select") as `corpus NN, NN; corpus NN`; an older run's actor
    numbers (`<role>_actors`) as they were printed; `default` when the run has neither (the random split)."""
    ids = run.get(f"{role}_speakers", run.get(f"{role}_actors"))
    if ids is None:
        return default
    if not all(isinstance(i, str) for i in ids):
        return str(ids)
    groups: dict[str, list[str]] = {}
    for i in ids:
        corpus, _, own = i.rpartition(":")
        groups.setdefault(corpus, []).append(own)
    return "; ".join(f"{corpus} {', '.join(own)}".strip() for corpus, own in groups.items())


def protocol_table(title: str, protocol: str, s: dict) -> list[str]:
    """Summary, ensemble, validation, per-class and per-run tables of one protocol."""
    lines = [f"## {title}\n", protocol + "\n", row("metric", "mean ± std (%)", "min", "max", "runs"), row(*"-----")]
    lines += [row(m, pm(s[m]), f"{100 * s[m]['min']:.1f}", f"{100 * s[m]['max']:.1f}", s[m]["n"]) for m in METRICS]
    for m in METRICS if "seed_ensemble" in s else ():
        lines.append(
            row(f"{m}, mean of the seeds' probabilities", pm(s["seed_ensemble"][m]), "", "", s["seed_ensemble"][m]["n"])
        )
    lines.append(
        row("validation UAR (early stopping and model selection)", pm(s["val_uar"]), "", "", s["val_uar"]["n"])
    )
    if "select_uar" in s:
        lines.append(
            row(
                "selection UAR (held-out speakers, never trained or stopped on)",
                pm(s["select_uar"]),
                f"{100 * s['select_uar']['min']:.1f}",
                f"{100 * s['select_uar']['max']:.1f}",
                s["select_uar"]["n"],
            )
        )
    lines.append("")
    if "parts" in s:  # model.stats_head: what each averaged model scores alone
        lines += [
            "Averaged models alone (`model.stats_head`):\n",
            row("model", "validation UAR", "test accuracy", "test UAR", "test macro-F1"),
            row(*"-----"),
        ]
        lines += [row(name, pm(p["val_uar"]), *(pm(p[f"test_{m}"]) for m in METRICS)) for name, p in s["parts"].items()]
        lines.append("")
    lines += ["Per-class recall (%): " + ", ".join(f"{c} {pm(v)}" for c, v in s["per_class_recall"].items()), ""]
    if "test_ece" in s:
        share = ", ".join(f"{c} {100 * v:.1f}" for c, v in s["predicted_share"].items())
        ece = s["test_ece"]
        lines += [f"Test ECE {ece['mean']:.3f} ± {ece['std']:.3f}; predicted-class share (%): {share}", ""]
    extra = ["select speakers", "select UAR"] if "select_uar" in s else []
    lines += [
        row(
            "fold",
            "seed",
            "test speakers",
            "val speakers",
            *extra,
            "epochs (best)",
            "train s",
            "accuracy",
            "UAR",
            "macro-F1",
        ),
        row(*"-" * (9 + len(extra))),
    ]
    for r in s["runs"]:
        held = [speakers(r, "select"), f"{100 * r['select_uar']:.1f}"] if extra else []
        lines.append(
            row(
                r["fold"],
                r["seed"],
                speakers(r, "test", "random 20 %"),
                speakers(r, "val", "random 10 %"),
                *held,
                f"{r['epochs_run']} ({r['best_epoch']})",
                f"{r['train_seconds']:.0f}",
                *(f"{100 * r[f'test_{m}']:.1f}" for m in METRICS),
            )
        )
    return lines + [""]


def cost_table(c: dict) -> list[str]:
    """Feature throughput, training time, size, inference latency, memory."""
    fe, tr, inf, mem = c["features"], c["training"], c["inference_ms_per_clip"], c["peak_memory_mb"]
    again = c.get("remeasured")
    where = f" on {again['host']['cpu_model']}" if again and "cpu_model" in again["host"] else ""
    note = (
        [
            f"Features, inference and memory re-measured at commit {again['host']['commit']}{where} "
            f"(`{again['command']}`); training figures from the run above.\n"
        ]
        if again
        else []
    )
    return [
        "## (c) cost\n",
        *note,
        row("what", "value"),
        row("---", "---"),
        row(
            "log-mel features, `ser.features.logmel` (batches)",
            f"{fe['logmel_clips_per_s']:.0f} clips/s ({fe['logmel_ms_per_clip']:.2f} ms per clip)",
        ),
        row(
            "plain per-clip librosa loop, same run",
            f"{fe['librosa_clips_per_s']:.0f} clips/s ({fe['librosa_ms_per_clip']:.2f} ms per clip)",
        ),
        row("speed-up (max abs difference)", f"{fe['ratio']:.1f}x ({fe['max_abs_db_diff']:.1e} dB)"),
        row(
            "training, seconds per epoch (median)",
            f"{tr['seconds_per_epoch_median']:.1f} ({tr['train_windows']} windows)",
        ),
        row(
            "training, seconds per run (median; epochs)",
            f"{tr['seconds_per_run_median']:.0f} ({tr['epochs_median']:.0f})",
        ),
        row("training, all runs", f"{tr['seconds_all_runs'] / 60:.1f} min"),
        row("model parameters", f"{c['model_parameters']:,}"),
        row("inference, one clip (features + model)", f"{inf['single']:.1f} ms"),
        row("inference, batches of 32 (features + model)", f"{inf['batched_32']:.2f} ms per clip"),
        row(
            "peak memory (benchmark process; largest worker)",
            f"{mem['benchmark_process']} MB; {mem['largest_worker']} MB",
        ),
        "",
    ]


def markdown(res: dict) -> str:
    """The whole results page."""
    h = res["host"]
    cpu = f" ({h['cpu_model']})" if "cpu_model" in h else ""  # results written before it was recorded lack it
    lines = [
        f"# RAVDESS benchmark\n\nCommand: `{res['command']}`  ",
        f"Commit {h['commit']}, {h['cpus']} CPUs{cpu}, GPUs: {h['gpus'] or 'none'}"
        f"{' (' + h['device'] + ')' if 'device' in h else ''}, "
        f"Keras backend {h.get('keras_backend', 'tensorflow')}; "
        f"wall time {res['wall_seconds'] / 60:.1f} min.  ",
        f"Clips: {res['clips']}; left out: {'; '.join(res['dropped']) or 'none'}.\n",
    ]
    if "speaker" in res:  # results written before the summary named its classes had all eight
        n = len(res["speaker"].get("classes", EMOTIONS))
        lines += protocol_table(f"(a) speaker-independent, {n} classes", res["speaker_protocol"], res["speaker"])
    if "article" in res:
        lines += protocol_table("(b) the article's protocol", res["article_protocol"], res["article"])
    if "cost" in res:
        lines += cost_table(res["cost"])
    return "\n".join(lines + [ANCHORS, ""])
