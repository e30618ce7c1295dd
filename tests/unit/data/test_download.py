"""Tests for ser.data.download against a local threaded HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ser.cli import app
from ser.data.download import DownloadError, emodb_checksums, fetch_emodb, fetch_ravdess, resolve_file
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


# -- EmoDB: the corpus site's download.zip, checked file by file -----------------------------------

EMODB_WAVS = ["03a01Fa.wav", "08b02Wb.wav", "16a05Tc.wav"]
EMODB_PATH = "/download/download.zip"
SOURCE_BLOBS = Path(__file__).resolve().parents[3].parent / "shared/data/emodb-16k/SOURCE_BLOBS.tsv"


def emodb_sums() -> dict[str, str]:
    return {name: hashlib.sha256(_wav_bytes(100 + i)).hexdigest() for i, name in enumerate(EMODB_WAVS)}


def make_emodb_zip(prefix: str = "", extra: dict[str, bytes] | None = None, tamper: str = "") -> bytes:
    """A small zip in the download.zip layout (wav/ beside lablaute/), optionally nested under `prefix`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i, name in enumerate(EMODB_WAVS):
            data = _wav_bytes(100 + i)
            zf.writestr(f"{prefix}wav/{name}", data[:-2] + b"\x01\x02" if name == tamper else data)
        zf.writestr(f"{prefix}lablaute/03a01Fa.lab", b"0.1 a\n")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def check_emodb(root: Path) -> None:
    assert sorted(p.name for p in (root / "wav").iterdir()) == EMODB_WAVS
    for i, name in enumerate(EMODB_WAVS):
        assert (root / "wav" / name).read_bytes() == _wav_bytes(100 + i)
    assert (root / "lablaute" / "03a01Fa.lab").is_file()


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_emodb_full_download_extracts_and_is_idempotent(server, tmp_path, monkeypatch):
    body = make_emodb_zip()
    monkeypatch.setenv("SER_EMODB_URL", server.add(EMODB_PATH, body))
    root = fetch_emodb(tmp_path, checksums=emodb_sums(), progress=False)
    assert root == tmp_path / "emodb"
    check_emodb(root)
    assert (tmp_path / "emodb.zip").read_bytes() == body and not (tmp_path / "emodb.zip.part").exists()
    assert (root / ".ser-extracted").read_text().strip() == "sha256:" + hashlib.sha256(body).hexdigest()
    assert fetch_emodb(tmp_path, checksums=emodb_sums(), progress=False) == root  # zip vs marker: reused
    assert len(server.seen(EMODB_PATH)) == 1 and no_leftovers(tmp_path)


def test_emodb_nested_folder_and_finished_part(server, tmp_path):
    body = make_emodb_zip(prefix="download/")
    url = server.add(EMODB_PATH, body)
    (tmp_path / "emodb.zip.part").write_bytes(body)  # downloaded whole, stopped before the rename
    root = fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False)
    assert root == tmp_path / "emodb" / "download"
    check_emodb(root)
    (req,) = server.seen(EMODB_PATH)
    assert req.headers.get("Range") == f"bytes={len(body)}-" and req.status == 416


def test_emodb_cut_connection_resumes_with_range(server, tmp_path):
    body = make_emodb_zip()
    url = server.add(EMODB_PATH, body)
    half = len(body) // 2
    server.cut_after, server.cut_paths = half, {EMODB_PATH}
    with pytest.raises(DownloadError, match="rerun to resume"):
        fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False)
    assert (tmp_path / "emodb.zip.part").read_bytes() == body[:half]
    assert not (tmp_path / "emodb").exists()
    check_emodb(fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False))
    req = server.seen(EMODB_PATH)[-1]
    assert req.headers.get("Range") == f"bytes={half}-" and req.status == 206
    assert (tmp_path / "emodb.zip").read_bytes() == body


def test_emodb_server_ignoring_range_restarts_from_zero(server, tmp_path):
    body = make_emodb_zip()
    url = server.add(EMODB_PATH, body)
    server.ignore_range = True
    (tmp_path / "emodb.zip.part").write_bytes(body[:100])
    check_emodb(fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False))
    (req,) = server.seen(EMODB_PATH)
    assert req.headers.get("Range") == "bytes=100-" and req.status == 200
    assert (tmp_path / "emodb.zip").read_bytes() == body


def test_emodb_tampered_wav_names_file_and_extracts_nothing(server, tmp_path):
    url = server.add(EMODB_PATH, make_emodb_zip(tamper="08b02Wb.wav"))
    sums = emodb_sums()
    with pytest.raises(DownloadError, match=rf"08b02Wb\.wav \(expected {sums['08b02Wb.wav']}, actual [0-9a-f]{{64}}\)"):
        fetch_emodb(tmp_path, url, checksums=sums, progress=False)
    assert not (tmp_path / "emodb").exists() and no_leftovers(tmp_path)
    assert (tmp_path / "emodb.zip").exists()  # the content is wrong, not the transfer: kept, no re-download


def test_emodb_failed_check_keeps_previous_extraction(server, tmp_path):
    url = server.add(EMODB_PATH, make_emodb_zip())
    root = fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False)
    marker = (root / ".ser-extracted").read_text()
    (tmp_path / "emodb.zip").unlink()
    server.add(EMODB_PATH, make_emodb_zip(tamper="03a01Fa.wav"))
    with pytest.raises(DownloadError, match="03a01Fa.wav"):
        fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False)
    check_emodb(root)
    assert (root / ".ser-extracted").read_text() == marker and no_leftovers(tmp_path)


def test_emodb_missing_or_unexpected_wav_named(server, tmp_path):
    url = server.add(EMODB_PATH, make_emodb_zip())
    sums = emodb_sums()
    with pytest.raises(DownloadError, match=r"1 missing: 09a01Nc\.wav") as err:
        fetch_emodb(tmp_path, url, checksums={**sums, "09a01Nc.wav": "0" * 64}, progress=False)
    assert "expected 4 EmoDB wavs" in str(err.value)
    del sums["16a05Tc.wav"]
    with pytest.raises(DownloadError, match=r"1 unexpected: 16a05Tc\.wav"):
        fetch_emodb(tmp_path, url, checksums=sums, progress=False)
    assert not (tmp_path / "emodb").exists() and len(server.seen(EMODB_PATH)) == 1


def test_emodb_zip_slip_and_corrupt_zip(server, tmp_path):
    url = server.add(EMODB_PATH, make_emodb_zip(extra={"../evil.wav": b"x"}))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="unsafe member"):
        fetch_emodb(dest, url, checksums=emodb_sums(), progress=False)
    assert not (tmp_path / "evil.wav").exists() and not (dest / "emodb").exists()
    (dest / "emodb.zip").write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="not a valid zip.*rerun to download again"):
        fetch_emodb(dest, url, checksums=emodb_sums(), progress=False)
    assert not (dest / "emodb.zip").exists()  # a corrupt zip is fetched again next time


def closed_port_url(path: str) -> str:
    """A URL on a local port that nothing listens on: connection refused, as offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def test_emodb_offline_names_url_and_local_alternative(tmp_path):
    url = closed_port_url(EMODB_PATH)
    with pytest.raises(DownloadError) as err:
        fetch_emodb(tmp_path, url, checksums=emodb_sums(), progress=False, timeout=2)
    msg = str(err.value)
    assert url in msg and "offline" in msg and "data.sources" in msg and "emodb-16k" in msg


def test_emodb_committed_checksums():
    sums = emodb_checksums()
    assert len(sums) == 535 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in sums.values())
    assert all(re.fullmatch(r"\d\d[ab]\d\d[WLEAFTN][a-g]\.wav", name) for name in sums)
    if not SOURCE_BLOBS.is_file():
        pytest.skip(f"{SOURCE_BLOBS} not present")
    rows = [line.split("\t") for line in SOURCE_BLOBS.read_text().splitlines() if line.strip()]
    assert {Path(row[0]).name: row[3] for row in rows} == sums


def test_cli_fetch_picks_the_corpus(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SER_ZENODO_RECORD_URL", publish(server, make_zip()))
    monkeypatch.setenv("SER_EMODB_URL", server.add(EMODB_PATH, make_emodb_zip()))
    result = CliRunner().invoke(app, ["data", "fetch", "--dest", str(tmp_path)])
    assert result.exit_code == 0 and str(tmp_path / "extracted") in result.output
    result = CliRunner().invoke(app, ["data", "fetch", "--corpus", "emodb", "--dest", str(tmp_path)])
    assert result.exit_code == 2  # the tiny zip is not the real corpus: the committed list says what is missing
    assert "expected 535 EmoDB wavs" in result.output and "534 missing" in result.output
    assert "03a01Fa.wav (expected 9c0fd58b" in result.output and "emodb.zip (kept; delete it" in result.output
    assert (tmp_path / "extracted" / ".ser-extracted").is_file() and not (tmp_path / "emodb").exists()
