"""Exploratory data analysis: a self-contained HTML page of figures describing the corpus.

Counts, durations and loudness come from the manifest (measured at ingest, so
nothing is decoded for them). The per-emotion examples decode one clip per
emotion of one actor (default: the lowest-numbered actor with every emotion;
strong intensity, statement 1, repetition 1 where recorded); the pitch figure
decodes up to `PITCH_CLIPS` seeded-random clips per emotion and gender. The
folder is replaced whole and atomically, only once every figure succeeded:

    out_dir/index.html       summary numbers, per-emotion table, each figure with a caption
    counts_emotion.png       clips per emotion, stacked by intensity
    counts_intensity.png     clips per intensity
    counts_actor.png         clips per actor, coloured by gender
    waveforms.png            one panel per emotion: the whole clip, the model window shaded
    mfcc.png, logmel.png     one panel per emotion: librosa MFCC and ser.features.logmel of the model window
    duration.png             duration histogram and per-emotion boxes
    loudness.png             whole-clip RMS (dBFS) per emotion
    pitch.png                median f0 (librosa.yin, 60-400 Hz) per emotion and gender
    speech.png               where each clip's speech starts and ends, the model window shaded
                             (`ser.data.coverage`: every clip decoded; the page says how much speech the window misses)

    ser report --params params.yaml --manifest data/manifest.csv --audio-dir data/raw --out reports/eda
"""

from __future__ import annotations

import html
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from ser.audio import fixed_window, load_audio
from ser.config import Params
from ser.data.coverage import LOSS_SHARE, SPEECH_TOP_DB, summarize_coverage, window_coverage
from ser.features.logmel import logmel
from ser.io import atomic_path
from ser.labels import EMOTIONS
from ser.plots import plot_counts, plot_coverage, plot_distributions, plot_examples

log = logging.getLogger(__name__)

PITCH_CLIPS = 12  # sampled clips per (emotion, gender) for the pitch figure
PITCH_RANGE = (60.0, 400.0)  # yin search range, Hz
N_MFCC = 20
CAPTIONS = {
    "counts_emotion": "Clips per emotion, stacked by intensity (neutral has no strong intensity in RAVDESS).",
    "counts_intensity": "Clips per intensity.",
    "counts_actor": "Clips per actor, coloured by gender: a balanced corpus has equal bars.",
    "waveforms": "Waveform of one clip per emotion ({emotions}) for actor {actor}, on one amplitude scale; "
    "the shaded span is the model's input window.",
    "mfcc": "MFCC (librosa, coefficients 1-{n_mfcc_shown}; 0, the log energy, left out) of the model window "
    "of the same clips ({emotions}); one colour scale for all panels.",
    "logmel": "Log-mel spectrogram (the model's input: ser.features.logmel) of the same clips ({emotions}); "
    "black at the end is the zero padding of clips shorter than the window.",
    "duration": "Clip durations: all clips, and per emotion.",
    "loudness": "Whole-clip RMS level (dBFS, from the manifest) per emotion.",
    "pitch": "Median f0 (librosa.yin, {fmin:g}-{fmax:g} Hz, frames within 30 dB of the loudest) of up to "
    "{per} random clips per emotion and gender ({n} clips).",
    "speech": "First and last speech frame of every clip (frames within {top_db:g} dB of the clip's loudest); "
    "the shaded span is the model window: speech outside it is never seen.",
}
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}figure{margin:2em 0}img{max-width:100%;border:1px solid #eee}"
    "figcaption{color:#555;font-size:.95em}"
)


class EdaError(ValueError):
    """The manifest holds no usable clip, or the requested actor is absent."""


def usable_clips(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows with labels and decodable audio."""
    ok = manifest["name_ok"].astype(bool) & manifest["decode_error"].isna() & manifest["emotion"].notna()
    clips = manifest[ok].copy()
    if clips.empty:
        raise EdaError("manifest: no labelled, decodable clip to describe")
    clips["actor"] = clips["actor"].astype(int)
    return clips


def pick_actor(clips: pd.DataFrame, actor: int | None = None) -> int:
    """The requested actor, else the lowest-numbered actor with the most emotions (normally all)."""
    per_actor = clips.groupby("actor")["emotion"].nunique()
    if actor is not None:
        if actor not in per_actor.index:
            raise EdaError(f"actor {actor} has no usable clip; actors present: {sorted(per_actor.index)}")
        return int(actor)
    return int(per_actor[per_actor == per_actor.max()].index.min())


def example_clips(clips: pd.DataFrame, actor: int) -> pd.DataFrame:
    """One clip per emotion of `actor`, indexed by emotion in RAVDESS order: strong, statement 1, repetition 1 first."""
    own = clips[clips["actor"] == actor].assign(_weak=lambda f: f["intensity"] != "strong")
    first = own.sort_values(["_weak", "statement", "repetition", "clip_id"]).groupby("emotion").head(1)
    first = first.set_index("emotion")
    return first.loc[[e for e in EMOTIONS if e in first.index]]


def median_f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median yin f0 (Hz) over frames within 30 dB of the loudest and inside PITCH_RANGE; NaN when none."""
    hop, frame = 256, 1024 if sample_rate <= 24000 else 2048
    f0 = librosa.yin(wave, fmin=PITCH_RANGE[0], fmax=PITCH_RANGE[1], sr=sample_rate, frame_length=frame, hop_length=hop)
    rms = librosa.feature.rms(y=wave, frame_length=frame, hop_length=hop)[0][: len(f0)]
    voiced = (rms > rms.max() * 10 ** (-30 / 20)) & (f0 > PITCH_RANGE[0] * 1.02) & (f0 < PITCH_RANGE[1] * 0.98)
    return float(np.median(f0[voiced])) if voiced.any() else float("nan")


def pitch_sample(clips: pd.DataFrame, audio_dir: Path, sample_rate: int, workers: int) -> pd.DataFrame:
    """Median f0 of up to PITCH_CLIPS seeded-random clips per (emotion, gender)."""
    groups = clips.groupby(["emotion", "gender"])
    sample = pd.concat(g.sample(min(len(g), PITCH_CLIPS), random_state=0) for _, g in groups)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        f0 = list(pool.map(lambda p: median_f0(load_audio(audio_dir / p, sample_rate), sample_rate), sample["path"]))
    return sample[["clip_id", "emotion", "gender"]].assign(f0=f0)


def draw_examples(examples: pd.DataFrame, audio_dir: Path, params: Params, dest: Path) -> dict[str, Path]:
    """Decode the example clips once; draw waveform, MFCC and log-mel grids from the same samples."""
    feats, sr = params.features, params.features.sample_rate
    waves = [load_audio(audio_dir / p, sr) for p in examples["path"]]
    windows = [fixed_window(w, sr, feats.offset, feats.duration) for w in waves]
    mels = [logmel(w, feats)[0].T for w in windows]
    mfccs = [
        librosa.feature.mfcc(
            y=w,
            sr=sr,
            n_mfcc=N_MFCC,
            n_fft=feats.n_fft,
            hop_length=feats.hop_length,
            n_mels=feats.n_mels,
            fmin=feats.fmin,
            fmax=feats.fmax,
        )
        for w in windows
    ]
    window = (feats.offset, feats.offset + feats.duration)
    return plot_examples(examples, waves, mels, mfccs, sr, window, feats.top_db, dest)


def summarize(manifest: pd.DataFrame, clips: pd.DataFrame) -> dict:
    """Corpus summary numbers and the per-emotion table shown on the page."""
    emotions = [e for e in EMOTIONS if (clips["emotion"] == e).any()]
    rates = manifest["sample_rate"].dropna().astype(int).value_counts().sort_index()
    table = (
        clips.groupby("emotion")
        .agg(clips=("clip_id", "size"), mean_duration_s=("duration_s", "mean"), median_rms_dbfs=("rms_dbfs", "median"))
        .reindex(emotions)
    )
    return {
        "clips": int(len(manifest)),
        "usable_clips": int(len(clips)),
        "actors": int(clips["actor"].nunique()),
        "emotion_names": emotions,
        "hours": float(manifest["duration_s"].sum() / 3600),
        "sample_rates": {int(r): int(n) for r, n in rates.items()},
        "genders": {str(g): int(n) for g, n in clips.drop_duplicates("actor")["gender"].value_counts().items()},
        "per_emotion": table.reset_index().to_dict("records"),
    }


def speech_fact(cov: dict) -> str:
    """One line on how much speech the model window keeps (`summarize_coverage`'s numbers)."""
    start, end = cov["window_s"]
    if not cov["clips_with_speech"]:
        return f"window {start:.2f}-{end:.2f} s; no clip has speech frames"
    return (
        f"window {start:.2f}-{end:.2f} s; speech runs {cov['median_speech_start_s']:.2f}-"
        f"{cov['median_speech_end_s']:.2f} s in the median clip; the window keeps {100 * cov['mean_kept']:.1f} % "
        f"of the speech frames on average; {100 * cov['share_losing_speech']:.1f} % of clips lose more than "
        f"{100 * LOSS_SHARE:g} % of theirs ({100 * cov['share_cut_at_start']:.1f} % are cut at the start, "
        f"{100 * cov['share_cut_at_end']:.1f} % at the end)"
    )


def render_page(summary: dict, figures: list[str], captions: dict[str, str], source: str) -> str:
    """The self-contained HTML page (inline CSS, relative image paths)."""
    esc = html.escape
    rates = ", ".join(f"{r} Hz ({n} clips)" for r, n in summary["sample_rates"].items())
    genders = ", ".join(f"{n} {g}" for g, n in sorted(summary["genders"].items()))
    facts = [
        ("Clips", f"{summary['clips']} ({summary['usable_clips']} usable)"),
        ("Actors", f"{summary['actors']} ({genders})"),
        ("Emotions", f"{len(summary['emotion_names'])}: {', '.join(summary['emotion_names'])}"),
        ("Total audio", f"{summary['hours']:.2f} hours"),
        ("Sample rates", rates),
        ("Speech in the model window", speech_fact(summary["speech"])),
    ]
    rows = "".join(
        f"<tr><td>{esc(r['emotion'])}</td><td>{r['clips']}</td><td>{r['mean_duration_s']:.2f}</td>"
        f"<td>{r['median_rms_dbfs']:.1f}</td></tr>"
        for r in summary["per_emotion"]
    )
    figs = "".join(
        f'<figure id="{n}"><img src="{n}.png" alt="{esc(captions[n])}"><figcaption>{esc(captions[n])}'
        "</figcaption></figure>\n"
        for n in figures
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Corpus report</title>'
        f"<style>{CSS}</style></head><body>\n<h1>Corpus report</h1><p>Manifest: <code>{esc(source)}</code></p>\n"
        "<table>" + "".join(f"<tr><th>{k}</th><td>{esc(v)}</td></tr>" for k, v in facts) + "</table>\n"
        "<h2>Per emotion</h2><table><tr><th>emotion</th><th>clips</th><th>mean duration (s)</th>"
        f"<th>median RMS (dBFS)</th></tr>{rows}</table>\n<h2>Figures</h2>\n{figs}</body></html>\n"
    )


def eda_report(manifest_path: Path, audio_dir: Path, out_dir: Path, params: Params, actor: int | None = None) -> dict:
    """Write the EDA page and its figures under `out_dir` (replaced whole, atomically).

    Args:
        manifest_path: manifest CSV from the ingest stage.
        audio_dir: folder the manifest's `path` column is relative to.
        out_dir: folder to (re)create with index.html and the PNGs.
        params: params.yaml; `features` sets the decoding rate, model window and log-mel settings.
        actor: actor of the per-emotion example figures; default the lowest-numbered one with every emotion.

    Returns:
        {"index": index.html path, "figures": {name: PNG path}, "summary": corpus numbers, "actor": example actor}.

    Raises:
        EdaError: no usable clip in the manifest, or `actor` is absent.
    """
    manifest = pd.read_csv(manifest_path)
    clips = usable_clips(manifest)
    summary = summarize(manifest, clips)
    emotions, chosen = summary["emotion_names"], pick_actor(clips, actor)
    examples = example_clips(clips, chosen)
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        figures = plot_counts(clips, emotions, staging) | draw_examples(examples, audio_dir, params, staging)
        pitch = pitch_sample(clips, audio_dir, params.features.sample_rate, params.features.workers)
        figures |= plot_distributions(clips, emotions, pitch, staging)
        summary["pitch_clips"] = int(pitch["f0"].notna().sum())
        feats = params.features
        coverage = window_coverage(clips, audio_dir, feats)
        summary["speech"] = summarize_coverage(coverage, feats.offset, feats.duration)
        figures |= plot_coverage(coverage, (feats.offset, feats.offset + feats.duration), staging)
        fill = dict(
            actor=chosen,
            emotions=", ".join(examples.index),
            n_mfcc_shown=N_MFCC - 1,
            fmin=PITCH_RANGE[0],
            fmax=PITCH_RANGE[1],
            per=PITCH_CLIPS,
            n=summary["pitch_clips"],
            top_db=SPEECH_TOP_DB,
        )
        captions = {name: text.format(**fill) for name, text in CAPTIONS.items()}
        (staging / "index.html").write_text(render_page(summary, list(figures), captions, str(manifest_path)))
    log.info("EDA report: %d figures for %d clips -> %s", len(figures), len(clips), out_dir / "index.html")
    return {
        "index": out_dir / "index.html",
        "figures": {n: out_dir / p.name for n, p in figures.items()},
        "summary": summary,
        "actor": chosen,
    }
