"""The corpus report's page: the summary table's lines, the figure captions and the self-contained HTML.

Text only, from what `ser.data.eda` measured: its `summarize` numbers (with the window's speech
coverage of `ser.data.coverage.summarize_coverage` under "speech"), the figure names it drew and
the caption values it knows (speaker, pitch sample size...). One page, inline CSS, images by
relative path, so the folder can be opened or published as it is.
"""

from __future__ import annotations

import html

import pandas as pd

from ser.data.coverage import LOSS_SHARE

STACKED = {
    "corpus": ", stacked by corpus (a corpus without a class adds nothing to its bar; intensity, which only "
    "RAVDESS-layout corpora record, has its own figure)",
    "intensity": ", stacked by intensity (neutral has no strong intensity in RAVDESS)",
    None: "",
}
CAPTIONS = {
    "counts_emotion": "Clips per emotion{stacked}.",
    "counts_intensity": "Clips per intensity{intensity_scope}.",
    "counts_speaker": "Clips per speaker, one panel per corpus (speaker ids without the corpus prefix), coloured by "
    "gender (grey: unknown): a balanced corpus has equal bars.",
    "waveforms": "Waveform of one clip per emotion ({emotions}) for speaker {speaker}, on one amplitude scale; "
    "the shaded span is the model's input window.",
    "mfcc": "MFCC (librosa, coefficients 1-{n_mfcc_shown}; 0, the log energy, left out) of the model window "
    "of the same clips ({emotions}); one colour scale for all panels.",
    "logmel": "Log-mel spectrogram (the model's input: ser.features.logmel) of the same clips ({emotions}); "
    "black at the end is the zero padding of clips shorter than the window.",
    "duration": "Clip durations: all clips, and per emotion.",
    "loudness": "Whole-clip RMS level (dBFS, from the manifest) per emotion.",
    "pitch": "Median f0 (librosa.yin, {fmin:g}-{fmax:g} Hz, frames within 30 dB of the loudest) of up to "
    "{per} random clips per emotion and gender ({n} clips){unknown_gender}.",
    "speech": "First and last speech frame of every clip (frames within {top_db:g} dB of the clip's loudest); "
    "the shaded span is the model window: speech outside it is never seen.",
}
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}figure{margin:2em 0}img{max-width:100%;border:1px solid #eee}"
    "figcaption{color:#555;font-size:.95em}"
)


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


def fact_lines(summary: dict) -> list[tuple[str, list[str]]]:
    """The summary table's rows: a heading and its lines of text."""
    rates = ", ".join(f"{r} Hz ({n} clips)" for r, n in summary["sample_rates"].items())
    order = ["female", "male", "unknown"]
    genders = sorted(summary["genders"].items(), key=lambda g: (order.index(g[0]) if g[0] in order else 9, g[0]))
    corpora = summary["corpora"]
    emotions = summary["emotion_names"]
    lacking = [f"{c['name']} lacks {', '.join(c['lacks'])}" for c in corpora if c["lacks"]]
    return [
        ("Clips", [f"{summary['clips']} ({summary['usable_clips']} usable)"]),
        (
            f"Corpora ({len(corpora)})",
            [f"{c['name']}: {c['clips']} clips, {c['speakers']} speakers, language {c['language']}" for c in corpora],
        ),
        ("Speakers", [f"{summary['speakers']} ({', '.join(f'{n} {g}' for g, n in genders)})"]),
        ("Emotions", [f"{len(emotions)}: {', '.join(emotions)}", *lacking]),
        ("Total audio", [f"{summary['hours']:.2f} hours"]),
        ("Sample rates", [rates]),
        ("Speech in the model window", [speech_fact(summary["speech"])]),
    ]


def render_page(summary: dict, figures: list[str], captions: dict[str, str], source: str) -> str:
    """The self-contained HTML page (inline CSS, relative image paths)."""
    esc = html.escape
    facts = "".join(
        f"<tr><th>{esc(k)}</th><td>{'<br>'.join(esc(line) for line in lines)}</td></tr>"
        for k, lines in fact_lines(summary)
    )
    names = [c["name"] for c in summary["corpora"]] if len(summary["corpora"]) > 1 else []
    rows = "".join(
        f"<tr><td>{esc(r['emotion'])}</td><td>{r['clips']}</td>"
        + "".join(f"<td>{r['by_corpus'][n]}</td>" for n in names)
        + f"<td>{r['mean_duration_s']:.2f}</td><td>{r['median_rms_dbfs']:.1f}</td></tr>"
        for r in summary["per_emotion"]
    )
    figs = "".join(
        f'<figure id="{n}"><img src="{n}.png" alt="{esc(captions[n])}"><figcaption>{esc(captions[n])}'
        "</figcaption></figure>\n"
        for n in figures
    )
    heads = "".join(f"<th>{esc(n)}</th>" for n in names)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Corpus report</title>'
        f"<style>{CSS}</style></head><body>\n<h1>Corpus report</h1><p>Manifest: <code>{esc(source)}</code></p>\n"
        f"<table>{facts}</table>\n"
        f"<h2>Per emotion</h2><table><tr><th>emotion</th><th>clips</th>{heads}<th>mean duration (s)</th>"
        f"<th>median RMS (dBFS)</th></tr>{rows}</table>\n<h2>Figures</h2>\n{figs}</body></html>\n"
    )


def caption_fill(clips: pd.DataFrame, stack: str | None) -> dict[str, str]:
    """The caption parts that depend on which corpora the manifest pools."""
    intensity = clips["intensity"] != ""
    scope = ", ".join(pd.unique(clips.loc[intensity, "corpus"]))
    partial = f" (only the {intensity.sum()} clips of {scope}: other corpora do not record it)"
    unknown = int((clips["gender"] == "").sum())
    return {
        "stacked": STACKED[stack],
        "intensity_scope": "" if intensity.all() else partial,
        "unknown_gender": f"; the {unknown} clips of speakers of unknown gender are left out" if unknown else "",
    }
