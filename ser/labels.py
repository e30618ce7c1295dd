"""RAVDESS label vocabulary and file-name parsing.

RAVDESS names every clip `MM-VV-EE-II-SS-RR-AA.ext` (modality, vocal channel,
emotion, intensity, statement, repetition, actor). This module turns a name into
labels and back, and selects the class set named in `params.yaml`.

    >>> parse_name("03-01-05-02-01-01-12.wav").emotion
    'angry'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: Emotion codes 01..08 in RAVDESS order.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
INTENSITIES: tuple[str, ...] = ("normal", "strong")
STATEMENTS: tuple[str, ...] = ("Kids are talking by the door", "Dogs are sitting by the door")
AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg"})

NAME_PATTERN = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
NAME_FORMAT = "MM-VV-EE-II-SS-RR-AA (seven two-digit fields, e.g. 03-01-05-02-01-01-12)"


class LabelError(ValueError):
    """A file name or class set that does not fit the RAVDESS vocabulary."""


@dataclass(frozen=True)
class ClipName:
    """The fields encoded in one RAVDESS file name."""

    clip_id: str
    modality: int
    vocal_channel: int
    emotion_code: int
    intensity_code: int
    statement: int
    repetition: int
    actor: int

    @property
    def emotion(self) -> str | None:
        """Emotion label, or None when the code is outside the vocabulary."""
        return EMOTIONS[self.emotion_code - 1] if 1 <= self.emotion_code <= len(EMOTIONS) else None

    @property
    def intensity(self) -> str | None:
        """Intensity label, or None when the code is outside 01..02."""
        ok = 1 <= self.intensity_code <= len(INTENSITIES)
        return INTENSITIES[self.intensity_code - 1] if ok else None

    @property
    def gender(self) -> str:
        """RAVDESS actors with odd numbers are male, even numbers female."""
        return "male" if self.actor % 2 else "female"


def parse_name(name: str | Path) -> ClipName:
    """Parse a RAVDESS file name (with or without folder and suffix).

    Raises:
        LabelError: when the name does not follow `NAME_FORMAT`.
    """
    stem = Path(name).stem
    match = NAME_PATTERN.match(stem)
    if not match:
        raise LabelError(f"{name}: file name is not RAVDESS-style; expected {NAME_FORMAT}")
    fields = [int(g) for g in match.groups()]
    return ClipName(stem, *fields)


def clip_name(emotion: str, intensity: str, statement: int, repetition: int, actor: int) -> str:
    """Build the RAVDESS stem for an audio-only speech clip (modality 03, channel 01)."""
    e = EMOTIONS.index(emotion) + 1
    i = INTENSITIES.index(intensity) + 1
    return f"03-01-{e:02d}-{i:02d}-{statement:02d}-{repetition:02d}-{actor:02d}"


def select_classes(classes: list[str] | None) -> list[str]:
    """Return the class set in vocabulary order; None or [] means all eight.

    Raises:
        LabelError: naming any class outside the vocabulary, or a set under two classes.
    """
    if not classes:
        return list(EMOTIONS)
    unknown = [c for c in classes if c not in EMOTIONS]
    if unknown:
        raise LabelError(f"unknown class(es) {unknown}; expected a subset of {list(EMOTIONS)}")
    if len(set(classes)) < 2:
        raise LabelError(f"need at least two distinct classes, got {classes}")
    return [e for e in EMOTIONS if e in classes]
