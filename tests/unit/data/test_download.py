"""Tests for ser.data.download against a local threaded HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser.data.download import DownloadError, fetch_ravdess, resolve_file
from tests.httpserver import LocalServer

ZIP_NAME = "Audio_Speech_Actors_01-24.zip"
WAVS = {
    "Actor_01": ["03-01-05-01-01-01-01.wav", "03-01-01-01-01-01-01.wav"],
    "Actor_02": ["03-01-03-02-02-01-02.wav", "03-01-04-01-01-02-02.wav"],
}


def _wav_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    sf.write(buf, (0.1 * rng.standard_normal(800)).astype("float32"), 16000, format="WAV")
    return buf.getvalue()


def make_zip(prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    """A small stored (uncompressed) zip in RAVDESS layout, optionally nested under `prefix`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, (actor, names) in enumerate(WAVS.items()):
            for j, name in enumerate(names):
                zf.writestr(f"{prefix}{actor}/{name}", _wav_bytes(10 * i + j))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def rdm_record(url: str, body: bytes, key: str = ZIP_NAME, checksum: str | None = None) -> bytes:
    """Record JSON in the current Zenodo (InvenioRDM) layout."""
    checksum = checksum or "md5:" + hashlib.md5(body).hexdigest()
    entry = {"id": "f1", "key": key, "size": len(body), "checksum": checksum}
    entry["links"] = {"self": url}
    return json.dumps({"id": 1188976, "files": [entry]}).encode()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


def publish(srv: LocalServer, body: bytes, **kw: object) -> str:
    """Serve `body` as the zip and a record pointing at it; return the record URL."""
    file_url = srv.add(f"/api/records/1/files/{ZIP_NAME}/content", body)
    return srv.add("/api/records/1", rdm_record(file_url, body, **kw), "application/json")


def zip_path() -> str:
    return f"/api/records/1/files/{ZIP_NAME}/content"


def check_tree(root: Path) -> None:
    actors = sorted(p.name for p in root.iterdir() if p.name.startswith("Actor_"))
    assert actors == ["Actor_01", "Actor_02"]
    for actor, names in WAVS.items():
        for name in names:
            data, sr = sf.read(root / actor / name)
            assert sr == 16000 and len(data) == 800


def test_full_download_extracts_and_is_idempotent(server, tmp_path, monkeypatch):
    body = make_zip()
    monkeypatch.setenv("SER_ZENODO_RECORD_URL", publish(server, body))
    root = fetch_ravdess(tmp_path, progress=False)
    check_tree(root)
    assert root == tmp_path / "extracted"
    assert (tmp_path / ZIP_NAME).read_bytes() == body
    assert not (tmp_path / f"{ZIP_NAME}.part").exists()
    assert len(server.seen(zip_path())) == 1
    assert fetch_ravdess(tmp_path, progress=False) == root  # verified zip + marker reused
    assert len(server.seen(zip_path())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_resume_sends_range(server, tmp_path):
    body = make_zip()
    url = publish(server, body)
    half = len(body) // 2
    (tmp_path / f"{ZIP_NAME}.part").write_bytes(body[:half])
    check_tree(fetch_ravdess(tmp_path, record_url=url, progress=False))
    (req,) = server.seen(zip_path())
    assert req.headers.get("Range") == f"bytes={half}-" and req.status == 206
    assert (tmp_path / ZIP_NAME).read_bytes() == body


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    body = make_zip()
    url = publish(server, body)
    server.ignore_range = True
    (tmp_path / f"{ZIP_NAME}.part").write_bytes(body[:100])
    check_tree(fetch_ravdess(tmp_path, record_url=url, progress=False))
    assert server.seen(zip_path())[0].status == 200
    assert (tmp_path / ZIP_NAME).read_bytes() == body


def test_cut_connection_keeps_part_and_rerun_resumes(server, tmp_path):
    body = make_zip()
    url = publish(server, body)
    server.cut_after, server.cut_paths = 3000, {zip_path()}
    with pytest.raises(DownloadError, match="rerun to resume"):
        fetch_ravdess(tmp_path, record_url=url, progress=False)
    part = tmp_path / f"{ZIP_NAME}.part"
    assert part.read_bytes() == body[:3000]
    check_tree(fetch_ravdess(tmp_path, record_url=url, progress=False))
    assert server.seen(zip_path())[-1].headers.get("Range") == "bytes=3000-"
    assert not part.exists()


def test_checksum_mismatch_removes_part(server, tmp_path):
    body = make_zip()
    bad = "0" * 32
    url = publish(server, body, checksum=f"md5:{bad}")
    with pytest.raises(DownloadError) as err:
        fetch_ravdess(tmp_path, record_url=url, progress=False)
    msg = str(err.value)
    assert ZIP_NAME in msg and bad in msg and hashlib.md5(body).hexdigest() in msg
    assert not (tmp_path / f"{ZIP_NAME}.part").exists() and not (tmp_path / ZIP_NAME).exists()


def test_offline_names_url_and_local_alternative(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/records/1188976"
    with pytest.raises(DownloadError) as err:
        fetch_ravdess(tmp_path, record_url=url, progress=False, timeout=2)
    msg = str(err.value)
    assert url in msg and "offline" in msg and "data.source" in msg and "ravdess-speech-16k" in msg


def test_http_errors_name_status_and_url(server, tmp_path):
    body = make_zip()
    url = publish(server, body)
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/nope"):
        fetch_ravdess(tmp_path, record_url=server.url("/nope"), progress=False)
    server.fail_first_n = 1
    with pytest.raises(DownloadError, match=r"HTTP 503 .*/api/records/1"):
        fetch_ravdess(tmp_path, record_url=url, progress=False)
    check_tree(fetch_ravdess(tmp_path, record_url=url, progress=False))  # transient: rerun works


def test_missing_file_or_checksum_in_record(server, tmp_path):
    body = make_zip()
    url = publish(server, body, key="something_else.zip")
    with pytest.raises(DownloadError, match=ZIP_NAME) as err:
        fetch_ravdess(tmp_path, record_url=url, progress=False)
    assert url in str(err.value)
    entry = {"key": ZIP_NAME, "size": len(body), "links": {"self": server.url(zip_path())}}
    server.add("/api/records/2", json.dumps({"files": [entry]}).encode(), "application/json")
    with pytest.raises(DownloadError, match="checksum"):
        fetch_ravdess(tmp_path, record_url=server.url("/api/records/2"), progress=False)


def test_zip_slip_member_rejected(server, tmp_path):
    body = make_zip(extra={"../evil.wav": b"x"})
    url = publish(server, body)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="unsafe member"):
        fetch_ravdess(dest, record_url=url, progress=False)
    assert not (tmp_path / "evil.wav").exists() and not (dest / "extracted").exists()


def test_nested_zip_and_legacy_record_formats(server, tmp_path):
    body = make_zip(prefix="Audio_Speech/")
    file_url = server.add("/legacy/file.zip", body)
    entry = {"size": len(body), "checksum": hashlib.md5(body).hexdigest()}  # bare md5
    entry["links"] = {"download": "/legacy/file.zip"}  # relative link
    legacy = {"files": {"entries": {ZIP_NAME: entry}}}
    url = server.add("/api/records/3", json.dumps(legacy).encode(), "application/json")
    remote = resolve_file(url, ZIP_NAME)
    assert (remote.url, remote.algo) == (file_url, "md5")
    root = fetch_ravdess(tmp_path, record_url=url, progress=False)
    assert root == tmp_path / "extracted" / "Audio_Speech"
    check_tree(root)
    sha256 = "sha256:" + hashlib.sha256(body).hexdigest()
    sha = {"files": [{"filename": ZIP_NAME, "checksum": sha256, "links": {"self": file_url}}]}
    url = server.add("/api/records/4", json.dumps(sha).encode(), "application/json")
    check_tree(fetch_ravdess(tmp_path / "sha", record_url=url, progress=False))
