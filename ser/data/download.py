"""Download, verify and extract the RAVDESS speech audio from Zenodo (record 1188976).

`fetch_ravdess` reads the record metadata, downloads the zip to `<dest>/<zip>.part`
(resuming with an HTTP Range request), checks size and the published md5/sha256, renames
it into place and extracts it safely to `<dest>/extracted`; verified results are reused.
It never retries in a loop: a failed run keeps the partial file and the next run resumes.
Run `python -m ser.data.download data/raw` (prints the folder holding Actor_XX/). Set
`SER_ZENODO_RECORD_URL` for a mirror; offline, point `data.source` in params.yaml at a
local folder of RAVDESS-layout audio instead.
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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin

import requests
import urllib3
from tqdm import tqdm

from ser.io import file_digest

ZENODO_RECORD_URL = "https://zenodo.org/api/records/1188976"
RAVDESS_SPEECH_ZIP = "Audio_Speech_Actors_01-24.zip"
RECORD_URL_ENV = "SER_ZENODO_RECORD_URL"
MARKER = ".ser-extracted"
_CHUNK = 1 << 20
_OFFLINE_HINT = (
    "The machine may be offline. Alternative: set `data.source` in params.yaml to a local "
    "folder of RAVDESS-layout audio (Actor_XX/*.wav), e.g. ../shared/data/ravdess-speech-16k."
)


class DownloadError(RuntimeError):
    """The RAVDESS archive could not be fetched, verified or extracted."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Zenodo record: name, download URL, size and published checksum."""

    key: str
    url: str
    size: int | None
    algo: str
    digest: str


def _get(url: str, timeout: float, headers: dict[str, str] | None = None) -> requests.Response:
    """GET `url` (streamed); map network failures and HTTP errors to DownloadError."""
    try:
        resp = requests.get(url, headers=headers, stream=True, timeout=(timeout, timeout))
    except requests.RequestException as exc:
        raise DownloadError(f"Could not reach {url}: {exc}. {_OFFLINE_HINT}") from exc
    if resp.status_code >= 400:
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
    size = int(size) if size else None
    return RemoteFile(filename, urljoin(record_url, url), size, algo, digest.lower())


def _verify(path: Path, remote: RemoteFile) -> None:
    """Check size and checksum; delete `path` and raise DownloadError when they disagree."""
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        path.unlink()
        raise DownloadError(f"{path.name}: size {actual_size} != expected {remote.size}; removed")
    actual = file_digest(path, remote.algo)
    if actual != remote.digest:
        path.unlink()
        raise DownloadError(
            f"{remote.key}: {remote.algo} checksum mismatch (expected {remote.digest}, "
            f"actual {actual}); removed {path.name}, rerun to download again"
        )


def _download(remote: RemoteFile, part: Path, progress: bool, timeout: float) -> None:
    """Stream `remote` into `part`, resuming from its current length with a Range request."""
    offset = part.stat().st_size if part.exists() else 0
    if remote.size is not None and offset >= remote.size:
        return  # complete (or oversized: _verify will reject and remove it)
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with _get(remote.url, timeout, headers) as resp:
        start = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
        if offset and (resp.status_code != 206 or not start or int(start.group(1)) != offset):
            offset = 0  # server ignored (or mangled) the range: start over
        length = int(resp.headers.get("Content-Length") or 0)
        total = remote.size or (offset + length if length else None)
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=remote.key,
            disable=not progress,
        )
        with part.open("ab" if offset else "wb") as fh, bar:
            try:  # read1 hands over bytes as they arrive, so a drop loses nothing received
                while chunk := resp.raw.read1(_CHUNK, decode_content=False):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadError(
                    f"Download of {remote.url} broke off after {fh.tell()} bytes ({exc}); "
                    f"partial file kept at {part}, rerun to resume. {_OFFLINE_HINT}"
                ) from exc
    if remote.size is not None and part.stat().st_size < remote.size:
        raise DownloadError(f"{remote.url} ended early; kept {part}, rerun to resume")


def _safe_members(zf: zipfile.ZipFile, zip_path: Path) -> None:
    """Reject absolute paths, drive letters and `..` components (zip-slip)."""
    for name in zf.namelist():
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts or re.match(r"^[A-Za-z]:", name):
            raise DownloadError(f"{zip_path.name}: unsafe member path {name!r}, not extracting")


def _actor_root(folder: Path) -> Path:
    """The folder holding Actor_XX/ directories: `folder` itself or one level deeper."""
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX")
    for cand in [folder, *subdirs]:
        if any(p.is_dir() and p.name.startswith("Actor_") for p in cand.iterdir()):
            return cand
    raise DownloadError(f"No Actor_XX folders found in {folder}")


def _extract(zip_path: Path, dest: Path, digest: str) -> Path:
    """Extract into a temp dir, then swap it into `dest/extracted` atomically."""
    out = dest / "extracted"
    if (out / MARKER).is_file() and (out / MARKER).read_text().strip() == digest:
        return _actor_root(out)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            _safe_members(zf, zip_path)
            zf.extractall(tmp)
        (tmp / MARKER).write_text(digest + "\n")
        if out.exists():
            os.replace(out, trash := Path(tempfile.mkdtemp(prefix=".old-", dir=dest)) / "x")
            shutil.rmtree(trash.parent, ignore_errors=True)
        os.replace(tmp, out)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path} is not a valid zip: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _actor_root(out)


def fetch_ravdess(
    dest: Path,
    record_url: str | None = None,
    filename: str = RAVDESS_SPEECH_ZIP,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download (resumably), verify and extract the RAVDESS speech zip into dest.

    Args:
        dest: Folder for the zip, its `.part` file and `extracted/`; created if missing.
        record_url: Zenodo record API URL; default $SER_ZENODO_RECORD_URL or ZENODO_RECORD_URL.
        filename: File of the record to fetch.
        progress: Show a tqdm byte progress bar.
        timeout: Connect/read timeout in seconds for each HTTP request.

    Returns:
        The folder holding the Actor_XX/ folders.

    Raises:
        DownloadError: network/HTTP failure, missing file or checksum, mismatch, unsafe zip.
    """
    record_url = record_url or os.environ.get(RECORD_URL_ENV) or ZENODO_RECORD_URL
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    remote = resolve_file(record_url, filename, timeout)
    final, part = dest / filename, dest / f"{filename}.part"
    if final.exists():
        with contextlib.suppress(DownloadError):
            _verify(final, remote)  # a bad final zip is removed and fetched again
    if not final.exists():
        _download(remote, part, progress, timeout)
        _verify(part, remote)
        os.replace(part, final)
    return _extract(final, dest, f"{remote.algo}:{remote.digest}")


if __name__ == "__main__":
    print(fetch_ravdess(Path(sys.argv[1] if len(sys.argv) > 1 else "data/raw")))
