"""Download, verify and extract corpus zips: RAVDESS from Zenodo (record 1188976), EmoDB from its site.

One path for both: the zip streams to `<dest>/<zip>.part` (resumed with an HTTP Range request, restarted when
the server ignores it, kept when the connection breaks), is checked and renamed into place, then extracted (no
zip-slip) into a temp folder that replaces the extraction atomically once its contents pass; a marker holding
the zip's checksum lets the next run reuse it. Nothing retries in a loop. `fetch_ravdess` checks the published
md5/sha256 (-> `<dest>/extracted`); `fetch_emodb` checks each `wav/*.wav` against `emodb_sha256.tsv` (->
`<dest>/emodb`). `python -m ser.data.download data/raw [ravdess|emodb]`. Set `SER_ZENODO_RECORD_URL` /
`SER_EMODB_URL` for a mirror; offline, point `data.sources` in params.yaml at a local folder instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

import requests
import urllib3
from tqdm import tqdm

from ser.io import file_digest

ZENODO_RECORD_URL = "https://zenodo.org/api/records/1188976"
RAVDESS_SPEECH_ZIP = "Audio_Speech_Actors_01-24.zip"
RECORD_URL_ENV = "SER_ZENODO_RECORD_URL"
EMODB_URL = "http://emodb.bilderbar.info/download/download.zip"
EMODB_URL_ENV = "SER_EMODB_URL"
EMODB_ZIP = "emodb.zip"  # the site's download.zip, saved under a name that says what it is
EMODB_SHA256 = "emodb_sha256.tsv"  # beside this module: file<TAB>sha256 of each original wav/*.wav
MARKER = ".ser-extracted"
_CHUNK = 1 << 20
_SHOWN = 5  # file names quoted in one error message
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")
_HINT = "The machine may be offline. Alternative: point `{}` in params.yaml at a local folder of {}, e.g. {}."
_OFFLINE_HINT = _HINT.format("data.source", "RAVDESS audio (Actor_XX/*.wav)", "../shared/data/ravdess-speech-16k")
_EMODB_HINT = _HINT.format("data.sources", "EmoDB audio (wav/, original names)", "../shared/data/emodb-16k")


class DownloadError(RuntimeError):
    """A corpus archive could not be fetched, verified or extracted."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: name, URL, size and checksum (empty `digest`: none published)."""

    key: str
    url: str
    size: int | None
    algo: str
    digest: str


@dataclass(frozen=True)
class Layout:
    """Where an archive goes and what it must hold: a folder with a top-level dir that `holds` accepts."""

    out: str  # extraction folder under dest
    what: str  # the dir(s) that mark the folder to return, for messages
    holds: Callable[[str], bool]
    hint: str  # the offline alternative


RAVDESS_LAYOUT = Layout("extracted", "Actor_XX folders", lambda name: name.startswith("Actor_"), _OFFLINE_HINT)
EMODB_LAYOUT = Layout("emodb", "a wav/ folder", lambda name: name == "wav", _EMODB_HINT)


def _get(url: str, timeout: float, headers: dict | None = None, hint: str = _OFFLINE_HINT, ok=()) -> requests.Response:
    """GET `url` (streamed); map network failures and HTTP errors (but codes in `ok`) to DownloadError."""
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=(timeout, timeout))
    except requests.RequestException as exc:
        raise DownloadError(f"Could not reach {url}: {exc}. {hint}") from exc
    if resp.status_code >= 400 and resp.status_code not in ok:
        resp.close()
        raise DownloadError(f"HTTP {resp.status_code} {resp.reason} from {url}")
    return resp


def resolve_file(record_url: str, filename: str, timeout: float = 30.0) -> RemoteFile:
    """Find `filename` in a Zenodo record (InvenioRDM or legacy JSON layout).

    Raises:
        DownloadError: unreachable record, bad JSON, or the file/URL/checksum is missing.
    """
    with _get(record_url, timeout) as resp:
        try:
            record = resp.json()
        except ValueError as exc:
            raise DownloadError(f"{record_url} did not return record metadata JSON") from exc
    files = record.get("files") if isinstance(record, dict) else None
    if isinstance(files, dict):  # InvenioRDM: {"enabled": .., "entries": [..] or {key: {..}}}
        files = files.get("entries", files)
    if isinstance(files, dict):
        files = [dict(v, key=v.get("key", k)) for k, v in files.items() if isinstance(v, dict)]
    entries = [e for e in files or [] if isinstance(e, dict)]
    names = [e.get("key") or e.get("filename") for e in entries]
    if filename not in names:
        raise DownloadError(f"Record {record_url} has no file {filename!r} (files: {names})")
    entry = entries[names.index(filename)]
    links = entry.get("links") or {}
    url = links.get("content") or links.get("download") or links.get("self")
    if not url:
        raise DownloadError(f"Record {record_url}: file {filename!r} lacks field links.self")
    checksum = str(entry.get("checksum") or entry.get("md5") or "")
    algo, _, digest = checksum.rpartition(":")
    algo = (algo or {32: "md5", 64: "sha256"}.get(len(digest), "")).lower()
    if not digest or algo not in hashlib.algorithms_available:
        raise DownloadError(f"Record {record_url}: file {filename!r} lacks field checksum")
    size = entry.get("size", entry.get("filesize"))
    return RemoteFile(filename, urljoin(record_url, url), int(size) if size else None, algo, digest.lower())


def _verify(path: Path, remote: RemoteFile) -> None:
    """Check size and checksum where known; delete `path` and raise DownloadError when they disagree."""
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        path.unlink()
        raise DownloadError(f"{path.name}: size {actual_size} != expected {remote.size}; removed")
    if remote.digest and (actual := file_digest(path, remote.algo)) != remote.digest:
        path.unlink()
        raise DownloadError(
            f"{remote.key}: {remote.algo} checksum mismatch (expected {remote.digest}, "
            f"actual {actual}); removed {path.name}, rerun to download again"
        )


def _download(remote: RemoteFile, part: Path, hint: str, progress: bool, timeout: float) -> None:
    """Stream `remote` into `part`, resuming from its length with a Range request (size unknown: the reply's)."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset >= remote.size:
        return  # complete (or oversized: _verify will reject and remove it)
    headers = {"Accept-Encoding": "identity"} | ({"Range": f"bytes={offset}-"} if offset else {})
    with _get(remote.url, timeout, headers, hint, ok=(416,) if offset else ()) as resp:
        if resp.status_code == 416:  # nothing past `offset`: whole already, else longer than the file
            if resp.headers.get("Content-Range") != f"bytes */{offset}":
                part.unlink()
                _download(remote, part, hint, progress, timeout)
            return
        span = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        if offset and (resp.status_code != 206 or not span or int(span.group(1)) != offset):
            offset, span = 0, None  # server ignored (or mangled) the range: start over
        length = int(resp.headers.get("Content-Length") or 0)
        total = remote.size or (int(span.group(2)) if span and span.group(2).isdigit() else None)
        total = total or (offset + length if length else None)
        kw = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "desc": remote.key, "disable": not progress}
        bar = tqdm(total=total, initial=offset, **kw)
        with part.open("ab" if offset else "wb") as fh, bar:
            try:  # read1 hands over bytes as they arrive, so a drop loses nothing received
                while chunk := resp.raw.read1(_CHUNK, decode_content=False):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadError(
                    f"Download of {remote.url} broke off after {fh.tell()} bytes ({exc}); "
                    f"partial file kept at {part}, rerun to resume. {hint}"
                ) from exc
    if total is not None and part.stat().st_size < total:
        raise DownloadError(f"{remote.url} ended early; kept {part}, rerun to resume")


def _find_root(folder: Path, layout: Layout, zip_name: str) -> Path:
    """The folder holding the layout's marking dirs: `folder` itself or one level deeper."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX")
    for cand in [folder, *subdirs]:
        if any(p.is_dir() and layout.holds(p.name) for p in cand.iterdir()):
            return cand
    raise DownloadError(f"{zip_name}: no {layout.what} at its top level or one folder down")


def _extract(zip_path: Path, dest: Path, digest: str, layout: Layout, check: Callable = lambda root: None) -> Path:
    """Extract (no zip-slip) into a temp dir, `check` its root, swap it into `dest/<layout.out>` atomically.

    An extraction whose marker holds `digest` is reused; one that fails leaves the previous one in place.
    """
    out = dest / layout.out
    if (out / MARKER).is_file() and (out / MARKER).read_text().strip() == digest:
        return _find_root(out, layout, zip_path.name)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in zf.namelist():  # no absolute paths, drive letters or `..` components
                parts = PurePosixPath(name.replace("\\", "/"))
                if parts.is_absolute() or ".." in parts.parts or re.match(r"^[A-Za-z]:", name):
                    raise DownloadError(f"{zip_path.name}: unsafe member path {name!r}, not extracting")
            zf.extractall(tmp)
        root = _find_root(tmp, layout, zip_path.name)
        check(root)
        (tmp / MARKER).write_text(digest + "\n")
        if out.exists():
            os.replace(out, trash := Path(tempfile.mkdtemp(prefix=".old-", dir=dest)) / "x")
            shutil.rmtree(trash.parent, ignore_errors=True)
        os.replace(tmp, out)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path} is not a valid zip: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / root.relative_to(tmp)


def _fetch_archive(
    remote: RemoteFile, dest: Path, layout: Layout, progress: bool, timeout: float, check: Callable = lambda r: None
) -> Path:
    """Download (resumably) and verify `dest/<remote.key>` unless there, then `_extract` it.

    Only a whole download gets the final name: with no published checksum it needs no request, its sha256
    keys the marker, and it is removed when unreadable.
    """
    dest.mkdir(parents=True, exist_ok=True)
    final, part = dest / remote.key, dest / f"{remote.key}.part"
    if final.exists():
        with contextlib.suppress(DownloadError):
            _verify(final, remote)  # a bad final zip is removed and fetched again
    if not final.exists():
        _download(remote, part, layout.hint, progress, timeout)
        _verify(part, remote)
        os.replace(part, final)
    try:
        return _extract(final, dest, f"{remote.algo}:{remote.digest or file_digest(final)}", layout, check)
    except DownloadError as err:
        if remote.digest or not isinstance(err.__cause__, zipfile.BadZipFile):
            raise
        final.unlink()
        raise DownloadError(f"{err}; removed it, rerun to download again") from err


def fetch_ravdess(
    dest: Path,
    record_url: str | None = None,
    filename: str = RAVDESS_SPEECH_ZIP,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download (resumably), verify and extract the RAVDESS speech zip into dest; return the Actor_XX/ folder.

    `dest` (created if missing) gets the zip, its `.part` file and `extracted/`; `record_url` defaults to
    $SER_ZENODO_RECORD_URL or ZENODO_RECORD_URL; `filename` is the record's file; `progress` shows a tqdm
    bar; `timeout` is per HTTP request (s). DownloadError: network/HTTP failure, no file or checksum, a
    mismatch, an unsafe zip.
    """
    record_url = record_url or os.environ.get(RECORD_URL_ENV) or ZENODO_RECORD_URL
    remote = resolve_file(record_url, filename, timeout)
    return _fetch_archive(remote, Path(dest), RAVDESS_LAYOUT, progress, timeout)


def emodb_checksums() -> dict[str, str]:
    """The committed SHA-256 of each original EmoDB wav, by file name (e.g. "03a01Fa.wav")."""
    rows = resources.files("ser.data").joinpath(EMODB_SHA256).read_text(encoding="utf-8").splitlines()
    return {row.split("\t")[0]: row.split("\t")[1] for row in rows[1:] if row.strip()}  # header: file, sha256


def check_wavs(root: Path, expected: dict[str, str], source: str = "wav/") -> None:
    """Raise DownloadError naming the missing, extra and mismatching `root/wav/*.wav` (`expected`: name -> sha256)."""
    found = {p.name: p for p in (root / "wav").iterdir() if p.is_file() and p.suffix.lower() == ".wav"}
    problems = {"missing": sorted(expected.keys() - found.keys()), "unexpected": sorted(found.keys() - expected.keys())}
    problems["with another sha256"] = [
        f"{name} (expected {expected[name]}, actual {actual})"
        for name in sorted(found.keys() & expected.keys())
        if (actual := file_digest(found[name])) != expected[name].lower()
    ]
    if said := [f"{len(v)} {k}: {', '.join(v[:_SHOWN])}{' ...' * (len(v) > _SHOWN)}" for k, v in problems.items() if v]:
        raise DownloadError(f"{source} does not hold the expected {len(expected)} EmoDB wavs ({'; '.join(said)})")


def fetch_emodb(
    dest: Path,
    url: str | None = None,
    checksums: dict[str, str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download (resumably) and extract EmoDB's download.zip into `dest/emodb`; return the folder holding wav/.

    No checksum is published, so each wav/*.wav must match `checksums` (name -> sha256; default the committed
    list); a zip that fails is kept (a new download would not differ) and nothing is extracted. `url` defaults
    to $SER_EMODB_URL or EMODB_URL; the zip is saved as `dest/emodb.zip`; the rest is as for fetch_ravdess.
    """
    url = url or os.environ.get(EMODB_URL_ENV) or EMODB_URL
    expected = emodb_checksums() if checksums is None else checksums
    source = f"{Path(dest) / EMODB_ZIP} (kept; delete it to download again): wav/"
    remote, check = RemoteFile(EMODB_ZIP, url, None, "sha256", ""), lambda r: check_wavs(r, expected, source)
    return _fetch_archive(remote, Path(dest), EMODB_LAYOUT, progress, timeout, check)


FETCHERS: dict[str, Callable[[Path], Path]] = {"ravdess": fetch_ravdess, "emodb": fetch_emodb}

if __name__ == "__main__":
    args = sys.argv[1:] + ["data/raw", "ravdess"][len(sys.argv) - 1 :]  # dest, corpus
    print(FETCHERS[args[1]](Path(args[0])))
