"""A synthetic corpus laid out as a user's own recordings come: a folder of audio plus a labels table.

`ser.data.synth`'s voices (other speakers than its RAVDESS-layout corpus's) in `audio/spkNN/NNN.wav`, and a
`labels.csv` of path, emotion in the corpus's own names (`LABELLED_NAMES`), speaker and gender (m/f). Like
EmoDB it lacks calm and surprised and has a class of its own, boredom, that maps to none of ours: what the
`labelled` source adapter and its mapping are tested and shown with.

    table = generate_labelled_corpus(Path("data/synth-labelled"), n_speakers=4)
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ser.data.synth import check_range, synth_clip, write_wav

# The labelled corpus's own emotion names -> ours (None: no counterpart, left out at ingest). It has no calm and
# no surprised, and a boredom class of its own, as EmoDB has.
LABELLED_NAMES: dict[str, str | None] = {
    "neutral": "neutral",
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "fear": "fearful",
    "disgust": "disgust",
    "boredom": None,
}
LABELLED_VOICES = 50  # speaker s of the labelled corpus has the voice of actor 50 + s: other voices than Actor_XX's


def generate_labelled_corpus(out_dir: Path, n_speakers: int = 4, seed: int = 1, sample_rate: int = 16000) -> Path:
    """Write `audio/spkNN/NNN.wav` and `labels.csv` (path, emotion, speaker, gender) under out_dir.

    Each speaker says both statements twice in six of our emotions (strong, neutral normal) and in boredom
    (mapped to nothing, as `LABELLED_NAMES` says), labelled with the corpus's own names.

    Returns:
        The labels table's path.

    Raises:
        ValueError: naming the argument when n_speakers, seed or sample_rate is out of range.
    """
    check_range("n_speakers", n_speakers, 1, 99 - LABELLED_VOICES)
    check_range("seed", seed, 0, float("inf"))
    check_range("sample_rate", sample_rate, 8000, float("inf"))
    rows = []
    for speaker in range(1, n_speakers + 1):
        voice = LABELLED_VOICES + speaker
        number = 0
        for own, ours in LABELLED_NAMES.items():
            emotion = ours or "calm"  # boredom: a low, slow voice
            for statement in (1, 2):
                for repetition in (1, 2):
                    intensity = "normal" if emotion in ("neutral", "calm") else "strong"
                    y = synth_clip(emotion, intensity, statement, repetition, voice, seed, sample_rate)
                    number += 1
                    rel = f"audio/spk{speaker:02d}/{number:03d}.wav"
                    write_wav(Path(out_dir) / rel, y, sample_rate)
                    rows.append([rel, own, f"spk{speaker:02d}", "m" if voice % 2 else "f"])
    table = Path(out_dir) / "labels.csv"
    tmp = table.with_name(f".{table.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "emotion", "speaker", "gender"], *rows])
    os.replace(tmp, table)
    return table
