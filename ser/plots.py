"""Charts for the reports: the training curves and the EDA page's figures.

Pure drawing: callers pass the data (history CSV, manifest rows, decoded
examples, pitch values) and a destination. Figures are plain
`matplotlib.figure.Figure` objects (no pyplot, no global backend state), so this
is safe in threads and headless; PNGs are written at 100 dpi.

    plot_history(Path("reports/train/history.csv"), Path("reports/train/curves.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ser.io import atomic_path

GENDER_COLOURS = {"female": "tab:red", "male": "tab:blue"}
UNKNOWN_COLOUR = "tab:grey"  # a speaker of unknown gender
INTENSITY_COLOURS = {"normal": "tab:blue", "strong": "tab:orange"}
MIN_SLOTS = 10  # bar slots per speaker panel: a corpus of few speakers does not get very wide bars


def save(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG atomically and return the path."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def legend(ax, colours: dict[str, str], **kwargs) -> None:
    """A legend of coloured patches (kwargs go to `Axes.legend`)."""
    ax.legend(handles=[Patch(color=c, alpha=0.5, label=name) for name, c in colours.items()], **kwargs)


def plot_history(history_csv: Path, out_png: Path, schedule: str = "plateau") -> Path:
    """Accuracy and loss per epoch, training vs validation, with the kept epoch marked.

    `schedule` is `train.schedule`: plateau keeps the best epoch (lowest val_loss), marked with a line;
    cosine keeps the last weights (or their mean over the last epochs), said in the title.

    Raises:
        ValueError: the CSV has no rows or no `epoch` column.
    """
    frame = pd.read_csv(history_csv)
    if frame.empty or "epoch" not in frame:
        raise ValueError(f"{history_csv}: expected columns epoch, accuracy, loss, val_accuracy, val_loss")
    fig = Figure(figsize=(11, 4), layout="constrained")
    # An ensemble's history has a `member` column: one pair of curves per member.
    groups = list(frame.groupby("member")) if "member" in frame else [(None, frame)]
    first = groups[0][1]
    best = int(first.loc[first["val_loss"].idxmin(), "epoch"]) if "val_loss" in first else None
    if schedule == "cosine":  # no epoch is picked: the end of training is kept
        best = None
        fig.suptitle("cosine schedule: the weights at the end of training are kept")
    for ax, metric in zip(fig.subplots(1, 2), ("accuracy", "loss"), strict=True):
        for member, part in groups:
            suffix = "" if member is None else f", member {member}"
            for column, label, style in ((metric, "training", "-"), (f"val_{metric}", "validation", "--")):
                if column in part:
                    ax.plot(
                        part["epoch"],
                        part[column],
                        style,
                        marker="." if len(part) <= 60 else None,
                        label=label + suffix,
                    )
        if best is not None:
            label = f"best epoch ({best})" if len(groups) == 1 else f"best epoch of member 0 ({best})"
            ax.axvline(best, color="grey", ls=":", label=label)
        if metric == "accuracy":
            ax.set_ylim(0, 1)
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, out_png)


def bars(ax, labels: list, values: np.ndarray, colours, bottom: np.ndarray | None = None, label: str | None = None):
    """Bar chart of `values` at positions 0..n-1 labelled `labels` (stacked on `bottom` when given)."""
    ax.set_xticks(np.arange(len(labels)), [str(x) for x in labels])
    return ax.bar(np.arange(len(labels)), values, color=colours, bottom=bottom, label=label)


def plot_counts(clips: pd.DataFrame, emotions: list[str], stack: str | None, dest: Path) -> dict[str, Path]:
    """Clips per emotion (stacked by the column `stack`, e.g. corpus or intensity, when given), per intensity
    (over the clips that record one; no figure when none does), and per speaker (`plot_speakers`)."""
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    column = clips[stack] if stack else pd.Series("clips", index=clips.index)
    table = pd.crosstab(clips["emotion"], column).reindex(index=emotions, columns=pd.unique(column), fill_value=0)
    palette = INTENSITY_COLOURS if stack == "intensity" else {c: f"C{i}" for i, c in enumerate(table.columns)}
    bottom = np.zeros(len(emotions))
    for part in table.columns:
        bars(ax, emotions, table[part].to_numpy(), palette.get(part), bottom, part)
        bottom = bottom + table[part].to_numpy()
    ax.bar_label(cast(BarContainer, ax.containers[-1]), labels=[str(int(n)) for n in bottom], fontsize=8)
    ax.set(ylabel="clips", title=f"Clips per emotion (stacked by {stack})" if stack else "Clips per emotion")
    if stack:
        ax.legend(title=stack)
    out = {"counts_emotion": save(fig, dest / "counts_emotion.png")}

    known = clips.loc[clips["intensity"] != "", "intensity"]
    if len(known):
        fig = Figure(figsize=(5, 4), layout="constrained")
        ax = fig.subplots()
        counts = known.value_counts().sort_index()
        colours = [INTENSITY_COLOURS.get(i) for i in counts.index]
        ax.bar_label(bars(ax, counts.index.tolist(), counts.to_numpy(), colours))
        partial = "" if len(known) == len(clips) else f"\n({', '.join(pd.unique(clips.loc[known.index, 'corpus']))})"
        ax.set(ylabel="clips", title=f"Clips per intensity{partial}")
        out["counts_intensity"] = save(fig, dest / "counts_intensity.png")
    out["counts_speaker"] = plot_speakers(clips, dest / "counts_speaker.png")
    return out


def speaker_ticks(ax, ids: list[str]) -> None:
    """Label a speaker panel's bars with `ids`: level when few and short, turned when more, none when too many."""
    n, longest = len(ids), max(len(i) for i in ids)
    if n > 120:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} speakers (too many to label)")
    elif n <= 30 and longest <= 4:
        ax.set_xticks(np.arange(n), ids, fontsize=8)
    else:
        short = [i if len(i) <= 14 else "\u2026" + i[-13:] for i in ids]  # the end tells numbered ids apart
        ax.set_xticks(np.arange(n), short, fontsize=8 if n <= 60 else 6, rotation=90)


def plot_speakers(clips: pd.DataFrame, out_png: Path) -> Path:
    """Clips per speaker, one panel per corpus (manifest order), bars coloured by gender (grey: unknown)."""
    corpora = list(pd.unique(clips["corpus"]))
    fig = Figure(figsize=(12, max(4.0, 0.8 + 2.6 * len(corpora))), layout="constrained")
    axes = fig.subplots(len(corpora), 1, squeeze=False)[:, 0]
    for ax, corpus in zip(axes, corpora, strict=True):
        own = clips[clips["corpus"] == corpus]
        speakers = own.groupby("speaker").agg(n=("clip_id", "size"), gender=("gender", "first"))
        n = len(speakers)
        colours = [GENDER_COLOURS.get(g, UNKNOWN_COLOUR) for g in speakers["gender"]]
        drawn = ax.bar(np.arange(n), speakers["n"].to_numpy(), color=colours)
        if n <= 40:
            ax.bar_label(drawn, fontsize=8)
        speaker_ticks(ax, [str(s).removeprefix(f"{corpus}:") for s in speakers.index])
        pad = max(0.6, (MIN_SLOTS - n) / 2)
        ax.set_xlim(-pad, n - 1 + pad)
        ax.set_ylim(0, speakers["n"].max() * 1.2)
        ax.set(ylabel="clips", title=f"{corpus}: {n} speaker{'s' * (n != 1)}, {len(own)} clips")
    genders = set(clips["gender"])
    shown = {g: c for g, c in GENDER_COLOURS.items() if g in genders}
    if genders - set(GENDER_COLOURS):
        shown["unknown"] = UNKNOWN_COLOUR
    fig.legend(handles=[Patch(color=c, label=g) for g, c in shown.items()], loc="outside upper right", ncols=3)
    fig.suptitle("Clips per speaker (colour: gender)")
    return save(fig, out_png)


def plot_examples(
    examples: pd.DataFrame,
    waves: list[np.ndarray],
    mels: list[np.ndarray],
    mfccs: list[np.ndarray],
    sample_rate: int,
    window: tuple[float, float],
    top_db: float,
    dest: Path,
) -> dict[str, Path]:
    """Waveform, MFCC and log-mel grids with one panel per example clip (row of `examples`, indexed by emotion).

    `mels` and `mfccs` are (bins, frames) arrays of the model window `window` = (start s, end s), shaded
    on the waveforms; colour scales are shared across panels so emotions compare directly.
    """
    rows, out = (len(examples) + 1) // 2, {}
    vmax = max(m.max() for m in mels)
    mfccs = [m[1:] for m in mfccs]  # coefficient 0 (log energy) would swamp the colour scale
    lim = np.percentile(np.abs(np.concatenate([m.ravel() for m in mfccs])), 99)
    kinds = {
        "waveforms": ("Waveform", "amplitude", None, None),
        "mfcc": (
            f"MFCC (coefficients 1-{mfccs[0].shape[0]})",
            "coefficient",
            mfccs,
            dict(cmap="coolwarm", vmin=-lim, vmax=lim),
        ),
        "logmel": (
            f"Log-mel spectrogram ({mels[0].shape[0]} bands)",
            "mel band",
            mels,
            dict(cmap="magma", vmin=vmax - top_db, vmax=vmax),
        ),
    }
    for name, (title, ylabel, images, style) in kinds.items():
        low = 1 if name == "mfcc" else 0  # first coefficient / band shown
        fig = Figure(figsize=(12, 2.1 * rows + 0.7), layout="constrained")
        axes = fig.subplots(rows, 2, sharex=True, sharey=True, squeeze=False).ravel()
        for ax in axes[len(examples) :]:
            ax.set_visible(False)
        for i, (ax, (emotion, clip)) in enumerate(zip(axes, examples.iterrows(), strict=False)):
            intensity = f" ({clip['intensity']})" if clip["intensity"] else ""
            ax.set_title(f"{emotion}{intensity}, {clip['clip_id']}", fontsize=10)
            if images is None:
                ax.plot(np.arange(len(waves[i])) / sample_rate, waves[i], lw=0.4, color="tab:blue")
                ax.axvspan(*window, color="tab:orange", alpha=0.12)
            else:
                assert style is not None  # kinds gives images and style together
                image = ax.imshow(
                    images[i],
                    origin="lower",
                    aspect="auto",
                    interpolation="nearest",
                    extent=(*window, low, low + images[i].shape[0]),
                    **style,
                )
        for ax in axes[max(0, len(examples) - 2) : len(examples)]:
            ax.set_xlabel("time (s)")
            ax.xaxis.set_tick_params(labelbottom=True)
        for ax in axes[::2]:
            ax.set_ylabel(ylabel)
        if images is not None:
            fig.colorbar(image, ax=axes.tolist(), shrink=0.7, label="dB" if name == "logmel" else "value")
        fig.suptitle(f"{title} per emotion, speaker {examples['speaker'].iloc[0]}")
        out[name] = save(fig, dest / f"{name}.png")
    return out


def boxes(ax, groups: list[np.ndarray], positions: np.ndarray, colour: str = "tab:blue", width: float = 0.6) -> None:
    """Boxplots with the individual points jittered on top (groups without finite values are skipped)."""
    kept = [(p, g[np.isfinite(g)]) for p, g in zip(positions, groups, strict=True) if np.isfinite(g).any()]
    if not kept:
        return
    ax.boxplot(
        [g for _, g in kept],
        positions=[p for p, _ in kept],
        widths=width,
        showfliers=False,
        patch_artist=True,
        boxprops=dict(facecolor=colour, alpha=0.3),
        medianprops=dict(color="black"),
    )
    rng = np.random.default_rng(0)
    for p, g in kept:
        ax.scatter(p + rng.uniform(-width / 4, width / 4, len(g)), g, s=6, color=colour, alpha=0.6, lw=0)


def plot_distributions(clips: pd.DataFrame, emotions: list[str], pitch: pd.DataFrame, dest: Path) -> dict[str, Path]:
    """Duration (histogram and per emotion), loudness per emotion, and median f0 per emotion and gender."""
    at = np.arange(len(emotions))
    by = [clips.loc[clips["emotion"] == e] for e in emotions]
    fig = Figure(figsize=(12, 4), layout="constrained")
    hist, box = fig.subplots(1, 2, width_ratios=[1, 2])
    hist.hist(clips["duration_s"], bins=30, color="tab:blue")
    hist.set(xlabel="duration (s)", ylabel="clips", title="Clip durations")
    boxes(box, [g["duration_s"].to_numpy(float) for g in by], at)
    box.set(xticks=at, xticklabels=emotions, ylabel="duration (s)", title="Duration per emotion")
    out = {"duration": save(fig, dest / "duration.png")}

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    boxes(ax, [g["rms_dbfs"].to_numpy(float) for g in by], at, colour="tab:green")
    ax.set(xticks=at, xticklabels=emotions, ylabel="RMS level (dBFS)", title="Loudness per emotion (whole-clip RMS)")
    out["loudness"] = save(fig, dest / "loudness.png")

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for shift, (gender, colour) in zip((-0.2, 0.2), GENDER_COLOURS.items(), strict=True):
        sel = pitch[pitch["gender"] == gender]
        boxes(ax, [sel.loc[sel["emotion"] == e, "f0"].to_numpy(float) for e in emotions], at + shift, colour, 0.35)
    if pitch.empty:
        ax.text(0.5, 0.5, "no clip of a speaker of known gender", transform=ax.transAxes, ha="center")
        ax.set(xlim=(-0.5, len(emotions) - 0.5), yticks=[])
    else:
        legend(ax, GENDER_COLOURS)
    ax.set(
        xticks=at, xticklabels=emotions, ylabel="median f0 (Hz)", title="Pitch per emotion and gender (sampled clips)"
    )
    out["pitch"] = save(fig, dest / "pitch.png")
    return out


def plot_coverage(table: pd.DataFrame, window: tuple[float, float], dest: Path) -> dict[str, Path]:
    """Where each clip's speech starts and ends (`ser.data.coverage.window_coverage`), the model window shaded."""
    speech = table.dropna(subset=["kept"])
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    ax.axvspan(*window, color="tab:gray", alpha=0.2, label="model window")
    top = float(max(speech["speech_end_s"].max(), window[1])) if len(speech) else window[1]
    edges = np.linspace(0.0, top + 0.1, 60)
    # matplotlib's stubs type bins as Sequence[float]; an ndarray of edges is what np.histogram takes
    ax.hist(speech["speech_start_s"], bins=edges, color="tab:green", alpha=0.7, label="speech starts")  # type: ignore[arg-type]
    ax.hist(speech["speech_end_s"], bins=edges, color="tab:purple", alpha=0.7, label="speech ends")  # type: ignore[arg-type]
    ax.legend()
    ax.set(xlabel="time in the clip (s)", ylabel="clips", title="Speech against the model window")
    return {"speech": save(fig, dest / "speech.png")}
