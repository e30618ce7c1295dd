"""A labelled folder's table: one row per clip of path, emotion, speaker and, optionally, gender and language.

What a user writes to bring their own corpus (README "Bring your own corpus"), read strictly: every line is
checked and every problem is named by file and line. The corpus's own emotion names map onto ours through the
source's `emotions:` (a name mapped to null leaves those clips out, counted). `ser evaluate --corpus` reads its
labels with the same function.

    rows, left_out = read_table(Path("calls/labels.csv"), Path("calls"), {"ang": "angry", "other": None})
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path, PurePosixPath

from ser.data.clips import ClipRow, SourceError
from ser.labels import EMOTIONS

LABEL_TABLES = ("labels.tsv", "labels.csv", "LABELS.tsv", "LABELS.csv")  # looked for in a labelled folder
TABLE_COLUMNS = ("path", "emotion", "speaker")  # required; `gender` and `language` are optional
GENDERS = {"m": "male", "male": "male", "f": "female", "female": "female"}


def labels_table(folder: Path, name: str | None) -> Path:
    """The labels table of a labelled folder: `name` inside it, else the first of `LABEL_TABLES` present.

    Raises:
        SourceError: no such table.
    """
    candidates = [name] if name else list(LABEL_TABLES)
    for candidate in candidates:
        path = folder / candidate
        if path.is_file():
            return path
    raise SourceError(
        f"{folder}: no labels table ({' or '.join(candidates)}); expected a TSV or CSV with a header "
        f"{', '.join(TABLE_COLUMNS)}[, gender, language]"
    )


def our_emotion(label: str, emotions: dict[str, str | None]) -> tuple[bool, str | None]:
    """(known, emotion) for a corpus label: the mapping first, then our own names in any case."""
    if label in emotions:
        return True, emotions[label]
    if label.lower() in EMOTIONS:
        return True, label.lower()
    return False, None


def read_table(
    table: Path, folder: Path, emotions: dict[str, str | None] | None = None, require_speaker: bool = True
) -> tuple[list[ClipRow], Counter]:
    """A labels table's clips: one row per clip, every line checked, problems listed by line.

    The table is a TSV (`.tsv`, `.txt`) or CSV (`.csv`) with a header naming at least `path`, `emotion` and
    (`require_speaker`) `speaker`; `gender` (male/female, m/f) and `language` are optional, other columns are
    ignored. Paths are relative to `folder`. Blank lines and lines starting with `#` are skipped. Without
    `require_speaker`, a header-less two-column table (path, emotion) is accepted too.

    Returns:
        The clips, and the count of labels mapped to nothing (`emotions` maps them to None): left out.

    Raises:
        SourceError: naming the table and each bad line: a missing file, a path outside `folder`, a path listed
            twice, an emotion that is neither ours nor in `emotions`, an empty field, an unknown gender, a
            missing column, or no clip at all.
    """
    emotions = emotions or {}
    if not table.is_file():
        raise SourceError(f"{table}: labels table not found; expected a TSV or CSV of {', '.join(TABLE_COLUMNS)}")
    text = table.read_text(encoding="utf-8-sig")
    delimiter = "," if table.suffix.lower() == ".csv" else "\t"
    lines = [
        (n, row)
        for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1)
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not lines:
        raise SourceError(f"{table}: empty; expected a header ({', '.join(TABLE_COLUMNS)}) and one row per clip")
    header = [c.strip().lower() for c in lines[0][1]]
    needed = TABLE_COLUMNS if require_speaker else TABLE_COLUMNS[:2]
    if "path" in header or require_speaker:
        missing = [c for c in needed if c not in header]
        if missing:
            raise SourceError(
                f"{table}: line {lines[0][0]}: no {', '.join(f'`{c}`' for c in missing)} column; expected a header "
                f"with {', '.join(TABLE_COLUMNS[: 3 if require_speaker else 2])}[, gender, language] "
                f"(got {', '.join(header)})"
            )
        body = lines[1:]
    else:  # header-less path<TAB>emotion (cross-corpus evaluation's older format)
        header, body = ["path", "emotion"], lines
    col: dict[str, int] = {
        name: header.index(name) for name in ("path", "emotion", "speaker", "gender", "language") if name in header
    }
    rows: list[ClipRow] = []
    excluded: Counter = Counter()
    problems: list[str] = []
    seen: dict[str, int] = {}
    root = folder.resolve()
    for n, raw in body:
        if len(raw) <= max(col[k] for k in needed):
            shape = "<TAB>".join(header) if delimiter == "\t" else ",".join(header)
            problems.append(f"line {n}: expected {shape}, got {delimiter.join(raw)!r}")
            continue
        cells = {k: (raw[i].strip() if i < len(raw) else "") for k, i in col.items()}
        empty = [k for k in needed if not cells.get(str(k))]
        if empty:
            problems.append(f"line {n}: empty {', '.join(empty)}")
            continue
        rel = cells["path"].replace("\\", "/")
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            problems.append(f"line {n}: path {rel!r} must be relative and inside {folder}")
            continue
        if rel in seen:
            problems.append(f"line {n}: {rel} is listed twice (first on line {seen[rel]})")
            continue
        seen[rel] = n
        known, emotion = our_emotion(cells["emotion"], emotions)
        if not known:
            problems.append(
                f"line {n}: emotion {cells['emotion']!r} is neither one of ours ({', '.join(EMOTIONS)}) nor mapped "
                "by the source's `emotions:` (map it, or map it to null to leave those clips out)"
            )
            continue
        gender = cells.get("gender", "").lower()
        if gender and gender not in GENDERS and gender not in ("unknown", "na", "n/a"):
            problems.append(f"line {n}: gender {cells['gender']!r}: expected male or female (m/f), or empty")
            continue
        if not (root / rel).resolve().is_file():
            problems.append(f"line {n}: {rel} not found under {folder}")
            continue
        if emotion is None:
            excluded[cells["emotion"]] += 1
            continue
        stem = str(pure.with_suffix(""))
        rows.append(
            ClipRow(
                rel,
                stem,
                cells.get("speaker") or None,
                emotion,
                cells["emotion"],
                gender=GENDERS.get(gender),
                language=cells.get("language") or None,
            )
        )
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise SourceError(f"{table}: " + "; ".join(problems[:10]) + more)
    if not rows:
        left = f" ({sum(excluded.values())} mapped to nothing: {dict(excluded)})" if excluded else ""
        raise SourceError(f"{table}: no labelled clips{left}; expected one row per clip")
    return rows, excluded
