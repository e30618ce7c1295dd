"""Exploratory data analysis: a self-contained HTML page of figures describing the corpora of the manifest.

Counts, durations and loudness come from the manifest (measured at ingest, so
nothing is decoded for them); the manifest may pool several corpora (`corpus`,
namespaced `speaker` ids such as "emodb:03", `gender` possibly unknown, the RAVDESS
name fields empty for other corpora). The per-emotion examples decode one clip per
emotion of one speaker (default: the first, in sorted order, of the speakers with
the most emotions; strong intensity, statement 1, repetition 1 where the corpus
records them, else the first clip by clip_id); the pitch figure decodes up to
`PITCH_CLIPS` seeded-random clips per emotion and known gender. This module loads,
counts, decodes and draws; the page's words (summary lines, captions, HTML) are
`ser.data.eda_page`'s. The folder is replaced whole and atomically, only once every
figure succeeded:

    out_dir/index.html       summary numbers (per corpus too), per-emotion table, each figure with a caption
    counts_emotion.png       clips per emotion, stacked by corpus (several) or by intensity (one RAVDESS-layout corpus)
    counts_intensity.png     clips per intensity (only when some corpus records intensity)
    counts_speaker.png       clips per speaker, one panel per corpus, coloured by gender (grey: unknown)
    waveforms.png            one panel per emotion: the whole clip, the model window shaded
    mfcc.png, logmel.png     one panel per emotion: librosa MFCC and ser.features.logmel of the model window
    duration.png             duration histogram and per-emotion boxes
    loudness.png             whole-clip RMS (dBFS) per emotion
    pitch.png                median f0 (librosa.yin, 60-400 Hz) per emotion and gender (speakers of known gender)
    speech.png               where each clip's speech starts and ends, the model window shaded
                             (`ser.data.coverage`: every clip decoded; the page says how much speech the window misses)

    ser report --params params.yaml --manifest data/manifest.csv --audio-dir data/raw --out reports/eda
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import pandas as pd

from ser.audio import fixed_window, load_audio
from ser.config import Params
from ser.data.coverage import SPEECH_TOP_DB, summarize_coverage, window_coverage
from ser.data.eda_page import CAPTIONS, caption_fill, render_page
from ser.features.logmel import logmel
from ser.io import atomic_path
from ser.labels import EMOTIONS
from ser.plots import plot_counts, plot_coverage, plot_distributions, plot_examples

log = logging.getLogger(__name__)

PITCH_CLIPS = 12  # sampled clips per (emotion, gender) for the pitch figure
PITCH_RANGE = (60.0, 400.0)  # yin search range, Hz
N_MFCC = 20
SHOWN_SPEAKERS = 8  # speakers an unknown-speaker error lists
# Manifest columns read as text; empty (unknown, or not recorded by the corpus) becomes "".
TEXT_COLUMNS = ("corpus", "speaker", "gender", "language", "intensity")
NEEDED_COLUMNS = (*TEXT_COLUMNS, "clip_id", "path", "name_ok", "decode_error", "emotion", "statement", "repetition")


class EdaError(ValueError):
    """The manifest holds no usable clip or lacks a column, or the requested speaker is absent."""


def usable_clips(manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows with labels and decodable audio; the text columns with "" for unknown."""
    missing = [c for c in NEEDED_COLUMNS if c not in manifest]
    if missing:
        raise EdaError(f"manifest lacks column(s) {', '.join(missing)}: written by an older `ser ingest`? Re-run it")
    ok = manifest["name_ok"].astype(bool) & manifest["decode_error"].isna() & manifest["emotion"].notna()
    clips = manifest[ok].copy()
    if clips.empty:
        raise EdaError("manifest: no labelled, decodable clip to describe")
    for col in TEXT_COLUMNS:
        clips[col] = clips[col].fillna("").astype(str)
    return clips


def emotion_order(labels: Iterable[str]) -> list[str]:
    """The distinct labels, ours in RAVDESS order first, then any other sorted."""
    present = set(labels)
    return [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))


def pick_speaker(clips: pd.DataFrame, speaker: str | None = None) -> str:
    """The requested speaker, else the first (sorted) of the speakers with the most emotions (normally all)."""
    per_speaker = clips.groupby("speaker")["emotion"].nunique()
    if speaker is not None:
        if speaker not in per_speaker.index:
            present = sorted(per_speaker.index)
            more = f" and {len(present) - SHOWN_SPEAKERS} more" if len(present) > SHOWN_SPEAKERS else ""
            raise EdaError(
                f"speaker {speaker!r} has no usable clip; speakers present: {', '.join(present[:SHOWN_SPEAKERS])}{more}"
            )
        return speaker
    return str(min(per_speaker[per_speaker == per_speaker.max()].index))


def example_clips(clips: pd.DataFrame, speaker: str) -> pd.DataFrame:
    """One clip per emotion of `speaker`, indexed by emotion (`emotion_order`).

    Strong intensity, statement 1, repetition 1 first where the corpus records them; then the first by clip_id.
    """
    own = clips[clips["speaker"] == speaker].assign(_weak=lambda f: f["intensity"] != "strong")
    first = own.sort_values(["_weak", "statement", "repetition", "clip_id"]).groupby("emotion").head(1)
    first = first.drop(columns="_weak").set_index("emotion")
    return first.loc[emotion_order(first.index)]


def median_f0(wave: np.ndarray, sample_rate: int) -> float:
    """Median yin f0 (Hz) over frames within 30 dB of the loudest and inside PITCH_RANGE; NaN when none."""
    hop, frame = 256, 1024 if sample_rate <= 24000 else 2048
    f0 = librosa.yin(wave, fmin=PITCH_RANGE[0], fmax=PITCH_RANGE[1], sr=sample_rate, frame_length=frame, hop_length=hop)
    rms = librosa.feature.rms(y=wave, frame_length=frame, hop_length=hop)[0][: len(f0)]
    voiced = (rms > rms.max() * 10 ** (-30 / 20)) & (f0 > PITCH_RANGE[0] * 1.02) & (f0 < PITCH_RANGE[1] * 0.98)
    return float(np.median(f0[voiced])) if voiced.any() else float("nan")


def pitch_sample(clips: pd.DataFrame, audio_dir: Path, sample_rate: int, workers: int) -> pd.DataFrame:
    """Median f0 of up to PITCH_CLIPS seeded-random clips per (emotion, gender), over speakers of known gender."""
    known = clips[clips["gender"] != ""]
    columns = ["clip_id", "emotion", "gender"]
    if known.empty:
        return pd.DataFrame(columns=[*columns, "f0"])
    groups = known.groupby(["emotion", "gender"])
    sample = pd.concat(g.sample(min(len(g), PITCH_CLIPS), random_state=0) for _, g in groups)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        f0 = list(pool.map(lambda p: median_f0(load_audio(audio_dir / p, sample_rate), sample_rate), sample["path"]))
    return sample[columns].assign(f0=f0)


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


def corpus_rows(clips: pd.DataFrame, emotions: list[str]) -> list[dict]:
    """Per corpus, in manifest order: usable clips, speakers, language(s) and the emotions it lacks."""
    rows = []
    for name, own in clips.groupby("corpus", sort=False):
        languages = sorted(set(own["language"]) - {""})
        rows.append(
            {
                "name": str(name),
                "clips": int(len(own)),
                "speakers": int(own["speaker"].nunique()),
                "language": ", ".join(languages) or "unknown",
                "lacks": [e for e in emotions if e not in set(own["emotion"])],
            }
        )
    return rows


def summarize(manifest: pd.DataFrame, clips: pd.DataFrame) -> dict:
    """Corpus summary numbers and the per-emotion table shown on the page (usable clips, bar the clip total)."""
    emotions = emotion_order(clips["emotion"])
    rates = manifest["sample_rate"].dropna().astype(int).value_counts().sort_index()
    table = (
        clips.groupby("emotion")
        .agg(clips=("clip_id", "size"), mean_duration_s=("duration_s", "mean"), median_rms_dbfs=("rms_dbfs", "median"))
        .reindex(emotions)
    )
    by_corpus = pd.crosstab(clips["emotion"], clips["corpus"]).reindex(index=emotions, fill_value=0)
    table["by_corpus"] = [{str(c): int(n) for c, n in row.items()} for _, row in by_corpus.iterrows()]
    genders = clips.drop_duplicates("speaker")["gender"].replace("", "unknown").value_counts()
    return {
        "clips": int(len(manifest)),
        "usable_clips": int(len(clips)),
        "corpora": corpus_rows(clips, emotions),
        "speakers": int(clips["speaker"].nunique()),
        "emotion_names": emotions,
        "hours": float(manifest["duration_s"].sum() / 3600),
        "sample_rates": {int(r): int(n) for r, n in rates.items()},
        "genders": {str(g): int(n) for g, n in genders.items()},
        "per_emotion": table.reset_index().to_dict("records"),
    }


def eda_report(manifest_path: Path, audio_dir: Path, out_dir: Path, params: Params, speaker: str | None = None) -> dict:
    """Write the EDA page and its figures under `out_dir` (replaced whole, atomically).

    Args:
        manifest_path: manifest CSV from the ingest stage (one or several corpora).
        audio_dir: folder the manifest's `path` column is relative to.
        out_dir: folder to (re)create with index.html and the PNGs.
        params: params.yaml; `features` sets the decoding rate, model window and log-mel settings.
        speaker: speaker id ("ravdess:01") of the per-emotion example figures; default `pick_speaker`'s choice.

    Returns:
        {"index": index.html path, "figures": {name: PNG path}, "summary": corpus numbers, "speaker": example speaker}.

    Raises:
        EdaError: no usable clip in the manifest, a column missing, or `speaker` absent.
    """
    manifest = pd.read_csv(manifest_path)
    clips = usable_clips(manifest)
    summary = summarize(manifest, clips)
    emotions, chosen = summary["emotion_names"], pick_speaker(clips, speaker)
    examples = example_clips(clips, chosen)
    # Several corpora: which one gives each class reads best; one corpus: its intensities where it records them.
    stack = "corpus" if len(summary["corpora"]) > 1 else "intensity" if (clips["intensity"] != "").all() else None
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        figures = plot_counts(clips, emotions, stack, staging) | draw_examples(examples, audio_dir, params, staging)
        pitch = pitch_sample(clips, audio_dir, params.features.sample_rate, params.features.workers)
        figures |= plot_distributions(clips, emotions, pitch, staging)
        summary["pitch_clips"] = int(pitch["f0"].notna().sum())
        feats = params.features
        coverage = window_coverage(clips, audio_dir, feats)
        summary["speech"] = summarize_coverage(coverage, feats.offset, feats.duration)
        figures |= plot_coverage(coverage, (feats.offset, feats.offset + feats.duration), staging)
        fill = dict(
            speaker=chosen,
            emotions=", ".join(examples.index),
            n_mfcc_shown=N_MFCC - 1,
            fmin=PITCH_RANGE[0],
            fmax=PITCH_RANGE[1],
            per=PITCH_CLIPS,
            n=summary["pitch_clips"],
            top_db=SPEECH_TOP_DB,
            **caption_fill(clips, stack),
        )
        captions = {name: text.format(**fill) for name, text in CAPTIONS.items()}
        (staging / "index.html").write_text(render_page(summary, list(figures), captions, str(manifest_path)))
    log.info("EDA report: %d figures for %d clips -> %s", len(figures), len(clips), out_dir / "index.html")
    return {
        "index": out_dir / "index.html",
        "figures": {n: out_dir / p.name for n, p in figures.items()},
        "summary": summary,
        "speaker": chosen,
    }
