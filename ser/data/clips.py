"""A corpus's clips as its adapter reads them: one `ClipRow` per file, from RAVDESS's or EmoDB's file names.

RAVDESS names every clip `MM-VV-EE-II-SS-RR-AA` (`ser.labels.parse_name`) inside `Actor_XX/`; EmoDB names it
speaker, sentence, emotion letter and version (`03a01Fa`). A name outside its scheme keeps `name_ok` False, so
the data contract quarantines the clip rather than ingest dropping it unseen.

    row = emodb_clip("wav/03a01Fa.wav")   # speaker 03, happy
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ser.labels import AUDIO_SUFFIXES, LabelError, parse_name

# The fields of a RAVDESS name the manifest keeps (`ser.labels.ClipName`'s attributes).
RAVDESS_FIELDS = ("modality", "vocal_channel", "emotion_code", "intensity", "statement", "repetition", "actor")
ACTOR_DIR = re.compile(r"^Actor_(\d+)$")
EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")
EMODB_FORMAT = "SSTTTEV (speaker, sentence, emotion letter, version, e.g. 03a01Fa)"
# EmoDB's emotion letters (German initials); L (Langeweile, boredom) has no counterpart among ours.
EMODB_EMOTIONS: dict[str, str | None] = {
    "W": "angry",
    "L": None,
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
EMODB_LEFT_OUT = {"L": "boredom"}
# The corpus documentation's speakers: 5 female, 5 male.
EMODB_GENDER = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}


class SourceError(ValueError):
    """A corpus source is missing, of an unknown layout, or its labels table is malformed."""


@dataclass
class ClipRow:
    """One clip of a source, as its adapter reads it (the measurements come later, from one decode)."""

    rel: str  # path inside the source folder, POSIX
    stem: str  # the clip's id inside its corpus
    speaker: str | None  # the corpus's own speaker id (not yet namespaced)
    emotion: str | None  # ours, or None when the name or label gives none
    corpus_label: str | None
    name_ok: bool = True
    gender: str | None = None
    language: str | None = None
    ravdess: dict = field(default_factory=dict)  # RAVDESS name fields (modality, ..., actor, folder_actor)


def with_language(row: ClipRow, language: str | None) -> ClipRow:
    row.language = row.language or language
    return row


def find_audio(root: Path) -> list[str]:
    """Audio files under `root` (POSIX paths relative to it, sorted); hidden files left out."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )


def ravdess_clip(rel: str) -> ClipRow:
    """A RAVDESS-named clip; a name outside the scheme keeps `name_ok` False (the contract quarantines it)."""
    pure = PurePosixPath(rel)
    folder = ACTOR_DIR.match(pure.parent.name)
    fields: dict = {"folder_actor": int(folder.group(1)) if folder else None}
    try:
        name = parse_name(pure.name)
    except LabelError:
        speaker = f"{int(folder.group(1)):02d}" if folder else None
        return ClipRow(rel, pure.stem, speaker, None, None, name_ok=False, ravdess=fields)
    fields.update({f: getattr(name, f) for f in RAVDESS_FIELDS})
    return ClipRow(
        rel,
        name.clip_id,
        f"{name.actor:02d}",
        name.emotion,
        f"{name.emotion_code:02d}",
        gender=name.gender,
        ravdess=fields,
    )


def emodb_clip(rel: str) -> ClipRow:
    """An EmoDB-named clip (`EMODB_FORMAT`); unknown names or letters keep `name_ok` False."""
    stem = PurePosixPath(rel).stem
    match = EMODB_NAME.match(stem)
    if not match or match.group(3) not in EMODB_EMOTIONS:
        return ClipRow(rel, stem, None, None, None, name_ok=False)
    speaker, _, letter, _ = match.groups()
    return ClipRow(rel, stem, speaker, EMODB_EMOTIONS[letter], letter, gender=EMODB_GENDER.get(speaker))


def clip_seed(clip_id: str) -> int:
    """A clip's own random seed (augmentation, benchmark conditions): from its id inside its corpus, so a corpus's
    draws do not depend on the name it is given (RAVDESS's are those of its bare file names)."""
    return zlib.crc32(clip_id.split(":", 1)[-1].encode())
