"""The `ingest` stage: put every corpus under data/ and write one clip manifest for all of them.

Sources (`data.sources`, `ser.data.sources`): the synthetic corpus, RAVDESS, EmoDB and labelled folders, several
at once. Each corpus lands in `data/raw/<name>/` as its files are; every clip is decoded once here and its
measurements (duration, rate, channels, RMS, peak, clipping, checksum, decode problems) go into the manifest
beside its labels, one row per clip with its `corpus` and a speaker id namespaced by corpus (`emodb:03`), so later
checks never decode again. `data/corpora.json` records each corpus: kind, language, licence, citation, counts and
the clips left out because their label maps to nothing. A corpus whose entry, files and adapters are unchanged
since the last run is kept as it is (its files linked, its rows reused), so adding one re-measures only that one.

    ser ingest --params params.yaml --out data/raw --manifest data/manifest.csv --corpora data/corpora.json
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from ser.corpora import DataParams, SourceParams, SyntheticParams
from ser.data.clips import RAVDESS_FIELDS, ClipRow, SourceError
from ser.data.measure import measure_clip
from ser.data.sources import Source, resolve_source, resolve_sources
from ser.data.tables import labels_table
from ser.io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "clip_id",
    "corpus",
    "speaker",
    "path",
    "format",
    "scheme",
    "name_ok",
    "emotion",
    "corpus_label",
    "gender",
    "language",
    *RAVDESS_FIELDS,
    "folder_actor",
    "sample_rate",
    "channels",
    "frames_declared",
    "frames_decoded",
    "duration_s",
    "rms_dbfs",
    "peak",
    "clip_ratio",
    "sha256",
    "decode_error",
]
# The manifest's integer columns (nullable Int64: a file that does not decode, or a corpus without RAVDESS
# names, has none of them).
INTEGER_COLUMNS = (
    "modality",
    "vocal_channel",
    "emotion_code",
    "statement",
    "repetition",
    "actor",
    "folder_actor",
    "sample_rate",
    "channels",
    "frames_declared",
    "frames_decoded",
)
FLOAT_COLUMNS = ("duration_s", "rms_dbfs", "peak", "clip_ratio")
# The manifest's text columns: read as text, so a corpus label "05" or a speaker "7" stays as written.
TEXT_COLUMNS = tuple(c for c in MANIFEST_COLUMNS if c not in (*INTEGER_COLUMNS, *FLOAT_COLUMNS, "name_ok"))
SOURCE_RECORD = ".ser-source.json"  # in data/raw/<corpus>/: the fingerprint the corpus was ingested with


class IngestError(SourceError):
    """The corpus source is missing, empty, or not in a layout an adapter reads."""


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest CSV with its text columns as text (pandas would read "05" as 5)."""
    return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})


def manifest_row(source: Source, clip: ClipRow, root: Path, under_raw: bool = True) -> dict:
    """One manifest row: the adapter's labels, namespaced by corpus, and the measurements of the file under root.

    `under_raw`: the path as data/raw holds it (`<corpus>/<path in the source>`); else relative to `root`.
    """
    row: dict = dict.fromkeys(MANIFEST_COLUMNS)
    row.update(clip.ravdess)
    row.update(
        clip_id=f"{source.name}:{clip.stem}",
        corpus=source.name,
        speaker=f"{source.name}:{clip.speaker}" if clip.speaker else None,
        path=f"{source.name}/{clip.rel}" if under_raw else clip.rel,
        format=Path(clip.rel).suffix.lstrip(".").lower(),
        scheme=source.scheme,
        name_ok=clip.name_ok,
        emotion=clip.emotion,
        corpus_label=clip.corpus_label,
        gender=clip.gender,
        language=clip.language,
    )
    row.update(measure_clip(root / clip.rel, row["format"]))
    return row


def as_manifest(rows: list[dict]) -> pd.DataFrame:
    """Rows as a manifest DataFrame with the column order and types every reader expects."""
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    for col in INTEGER_COLUMNS:
        manifest[col] = pd.to_numeric(manifest[col]).astype("Int64")
    manifest["name_ok"] = manifest["name_ok"].astype(bool)
    return manifest


def measure_clips(
    source: Source, clips: list[ClipRow], root: Path, workers: int = 2, under_raw: bool = True
) -> pd.DataFrame:
    """The manifest rows of `clips`, their files measured under `root` (paths as `manifest_row` says)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return as_manifest(list(pool.map(lambda clip: manifest_row(source, clip, root, under_raw), clips)))


def measure_corpus(
    entry: str | Path | dict | SourceParams, workers: int = 2, synthetic: SyntheticParams | None = None
) -> tuple[pd.DataFrame, dict]:
    """One corpus measured where it lies (nothing copied; paths relative to its folder): its manifest rows and
    corpora.json entry. What the benchmarks read a corpus with; `entry` is a `data.sources` entry (a folder or
    a mapping)."""
    if isinstance(entry, dict):
        entry = SourceParams(**entry)
    try:
        source = resolve_source(str(entry) if isinstance(entry, Path) else entry, synthetic or SyntheticParams())
    except SourceError as err:
        raise IngestError(str(err)) from None
    folder = source.folder(Path("data/download"))
    if folder is None:
        raise IngestError(f"{source.name}: a synthetic corpus is generated by ingest; measure its folder instead")
    clips, excluded = source.clips(folder)
    frame = measure_clips(source, clips, folder, workers, under_raw=False)
    return frame, corpus_record(source, frame, excluded)


def build_manifest(folder: Path, workers: int = 2) -> pd.DataFrame:
    """The manifest of the corpus in `folder` (any layout an adapter reads), measured in place."""
    return measure_corpus(folder, workers)[0]


def corpus_record(source: Source, frame: pd.DataFrame, excluded: Counter) -> dict:
    """The corpus's entry in data/corpora.json."""
    facts = source.facts()
    return {
        "name": source.name,
        "kind": source.kind,
        "source": source.origin,
        "use": source.spec.use,
        "language": facts.language,
        "licence": facts.licence,
        "licence_url": facts.licence_url,
        "citation": facts.citation,
        "clips": len(frame),
        "speakers": int(frame["speaker"].nunique()),
        "excluded": dict(sorted(excluded.items())),
    }


def kept_corpus(source: Source, fingerprint: str, out_dir: Path, manifest_path: Path, corpora_path: Path):
    """(rows, record) of the corpus as the last run ingested it, when its fingerprint is unchanged; else None."""
    record = out_dir / source.name / SOURCE_RECORD
    if not (record.is_file() and manifest_path.is_file() and corpora_path.is_file()):
        return None
    if read_json(record).get("fingerprint") != fingerprint:
        return None
    manifest = read_manifest(manifest_path)
    if "corpus" not in manifest:
        return None
    entry = next((c for c in read_json(corpora_path) if c.get("name") == source.name), None)
    rows = manifest[manifest["corpus"] == source.name]
    if entry is None or len(rows) != entry.get("clips"):
        return None
    return rows, entry


def link_tree(src: Path, dest: Path) -> None:
    """`dest` as a copy of `src` made of hard links (a copy where linking is not possible)."""
    for path in src.rglob("*"):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def ingest_source(
    source: Source, dest: Path, out_dir: Path, manifest_path: Path, corpora_path: Path, download_dir: Path, workers: int
) -> tuple[pd.DataFrame, dict]:
    """Fill `dest` (the staging data/raw/<name>/) with one corpus; return its manifest rows and corpora entry."""
    folder = source.folder(download_dir)
    fingerprint = source.fingerprint(folder)
    kept = kept_corpus(source, fingerprint, out_dir, manifest_path, corpora_path)
    if kept is not None:
        link_tree(out_dir / source.name, dest)
        log.info("%s: unchanged since the last run, %d clips kept", source.name, len(kept[0]))
        return kept
    dest.mkdir(parents=True)
    if folder is None:
        from ser.data.synth import generate_corpus

        generate_corpus(dest, n_actors=source.synthetic.n_actors, seed=source.synthetic.seed)
        folder = dest
    clips, excluded = source.clips(folder)
    if folder != dest:  # the labelled clips and the labels table; other files stay behind
        files = [c.rel for c in clips]
        if source.kind == "labelled":
            files.append(labels_table(folder, source.spec.labels).relative_to(folder).as_posix())
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / rel, dest / rel)
    frame = measure_clips(source, clips, dest, workers)
    write_json(dest / SOURCE_RECORD, {"fingerprint": fingerprint, "source": source.origin})
    if excluded:
        log.warning(
            "%s: left out %d clip(s) whose label maps to nothing: %s",
            source.name,
            sum(excluded.values()),
            dict(excluded),
        )
    return frame, corpus_record(source, frame, excluded)


def ingest(
    data: DataParams,
    out_dir: Path,
    manifest_path: Path,
    download_dir: Path,
    workers: int = 2,
    corpora_path: Path | None = None,
) -> pd.DataFrame:
    """Fill `out_dir` with every corpus, write the manifest CSV and the corpora JSON; all replace old ones atomically.

    Raises:
        IngestError: a source cannot be resolved or read, naming the entry, the file and the line.
    """
    corpora_path = corpora_path or manifest_path.with_name("corpora.json")
    try:
        sources = resolve_sources(data)
    except SourceError as err:
        raise IngestError(str(err)) from None
    frames, records = [], []
    with atomic_path(out_dir) as staging:
        staging.mkdir(parents=True)
        for source in sources:
            try:
                frame, record = ingest_source(
                    source, staging / source.name, out_dir, manifest_path, corpora_path, download_dir, workers
                )
            except SourceError as err:
                raise IngestError(str(err)) from None
            frames.append(frame)
            records.append(record)
        manifest = as_manifest([r for f in frames for r in f.to_dict("records")])
        with atomic_path(manifest_path) as tmp:
            manifest.to_csv(tmp, index=False)
        write_json(corpora_path, records)
    bad = manifest[manifest["decode_error"].notna() | ~manifest["name_ok"]]
    if len(bad):
        log.warning("%d clip(s) with problems (validate decides): %s", len(bad), bad["path"].tolist()[:5])
    for r in records:
        log.info("ingested %s: %d clips, %d speakers (%s)", r["name"], r["clips"], r["speakers"], r["source"])
    return manifest
