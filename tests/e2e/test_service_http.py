"""The service over HTTP: a real `bentoml serve` on 127.0.0.1, and the built Bento served by tag.

The session's tiny-model server (tests/e2e/conftest.py) takes
every bad input and must still answer afterwards; the Bento test builds with
`bentoml build`, exports the Bento, imports it into a second, empty
BENTOML_HOME and serves `bentoml serve <tag>` from an unrelated folder, so code,
model and config can only come from the Bento.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import env_for, sh
from tests.support import CLASSES, Served, bad_uploads, silent_flac, wav_bytes

pytestmark = pytest.mark.slow


def post(url: str, data: bytes, name: str = "clip.wav", endpoint: str = "predict") -> requests.Response:
    return requests.post(f"{url}/{endpoint}", files={"audio": (name, data, "application/octet-stream")}, timeout=60)


def test_health_and_predict(server: str, home: tuple[Path, str]) -> None:
    assert requests.get(f"{server}/livez", timeout=5).status_code == 200
    assert requests.get(f"{server}/readyz", timeout=5).status_code == 200
    body = post(server, wav_bytes(1.0)).json()
    assert body["label"] in CLASSES and set(body["probabilities"]) == set(CLASSES)
    assert body["model_version"] == home[1]


def test_long_clip_and_batch_endpoint(server: str) -> None:
    body = post(server, wav_bytes(4.0, rate=22050, channels=2)).json()
    assert len(body["windows"]) == 7 and body["windows"][-1]["end_s"] == pytest.approx(4.0)
    files = [("audios", (f"c{i}.wav", wav_bytes(1.0 + i), "audio/wav")) for i in range(3)]
    resp = requests.post(f"{server}/predict_batch", files=files, timeout=60)
    assert resp.status_code == 200 and len(resp.json()) == 3


def test_predict_speaker_endpoint(server: str) -> None:
    files = [("audios", (f"c{i}.wav", wav_bytes(1.0 + i / 2), "audio/wav")) for i in range(4)]
    resp = requests.post(f"{server}/predict_speaker", files=files, timeout=60)
    assert resp.status_code == 200, resp.text[:400]
    body = resp.json()
    assert body["reference_clips"] == 4 and len(body["clips"]) == 4 and body["label"] in CLASSES
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-3
    few = requests.post(f"{server}/predict_speaker", files=files[:2], timeout=60)
    assert few.status_code == 400 and few.json()["code"] == "too_few_clips", few.text[:400]


def test_a_profile_and_a_class_subset_round_trip_through_package_and_service(
    server: str, home: tuple[Path, str], tmp_path: Path
) -> None:
    """`?profile=` (packaged with the model by `package`) and `?classes=` answer as `ser predict` does locally with
    the model folder's profile; an unknown profile or class is a 4xx in the one shape."""
    from ser.serving.predict import predict_local

    (tmp_path / "clip.wav").write_bytes(wav_bytes(1.0))
    local = predict_local([tmp_path / "clip.wav"], home[0].parent / "models", profile="studio")
    asked = {"profile": "studio", "classes": "sad,neutral"}
    files = {"audio": ("clip.wav", wav_bytes(1.0), "audio/wav")}
    plain = requests.post(f"{server}/predict", files=files, timeout=60).json()
    calibrated = requests.post(f"{server}/predict", files=files, params={"profile": "studio"}, timeout=60).json()
    assert calibrated["probabilities"] == pytest.approx(local[0]["probabilities"], abs=1e-4)
    assert calibrated["probabilities"] != pytest.approx(plain["probabilities"], abs=1e-2)
    subset = requests.post(f"{server}/predict", files=files, params=asked, timeout=60).json()
    p = [calibrated["probabilities"][c] for c in ("neutral", "sad")]
    assert subset["probabilities"] == pytest.approx({"neutral": p[0] / sum(p), "sad": p[1] / sum(p)}, abs=1e-4)
    batch = [("audios", (f"c{i}.wav", wav_bytes(1.0), "audio/wav")) for i in range(2)]
    both = requests.post(f"{server}/predict_batch", files=batch, params=asked, timeout=60).json()
    assert [b["probabilities"] for b in both] == [pytest.approx(subset["probabilities"], abs=1e-4)] * 2
    refusals = {
        ("predict", "profile", "nope"): (
            404,
            "unknown_profile",
            "unknown profile 'nope'; this model's profiles: studio",
        ),
        ("predict_batch", "classes", "happy,bored"): (400, "unknown_class", "unknown class(es) ['bored']"),
        ("predict_speaker", "profile", "studio"): (400, "bad_query", "profile: /predict_speaker measures"),
    }
    for (endpoint, key, value), (status, code, message) in refusals.items():
        form = files if endpoint == "predict" else [("audios", ("c.wav", wav_bytes(1.0), "audio/wav"))] * 4
        resp = requests.post(f"{server}/{endpoint}", files=form, params={key: value}, timeout=60)
        assert resp.status_code == status and set(resp.json()) == {"error", "code"}, resp.text[:300]
        assert resp.json()["code"] == code and resp.json()["error"].startswith(message), resp.text[:300]


@pytest.mark.parametrize("case", list(bad_uploads()))
def test_bad_input_gets_4xx_and_service_keeps_serving(server: str, case: str) -> None:
    make, status, message = bad_uploads()[case]
    resp = post(server, make())
    assert resp.status_code == status, resp.text
    assert message in resp.text
    assert post(server, wav_bytes(1.0)).status_code == 200


def test_oversized_body_refused_before_reading(server: str) -> None:
    resp = post(server, b"\0" * (3 * 2**20))
    assert resp.status_code == 413 and "upload cap" in resp.text
    malformed = {
        "no body": {"data": b""},
        "json with a URL": {"json": {"audio": "http://127.0.0.1:9/x.wav"}},
        "wrong field": {"files": {"file": ("a.wav", wav_bytes(1.0))}},
        "text instead of a file": {"files": {"audio": (None, "http://127.0.0.1:9/x.wav")}},
    }
    for case, kwargs in malformed.items():
        resp = requests.post(f"{server}/predict", timeout=10, **kwargs)
        assert resp.status_code == 400 and "multipart/form-data" in resp.text, (case, resp.text)
    assert post(server, silent_flac(7200)).status_code == 413
    assert requests.get(f"{server}/readyz", timeout=5).status_code == 200


def test_built_bento_serves_by_tag(home: tuple[Path, str], tmp_path: Path) -> None:
    env = env_for(home[0])
    sh(["bentoml", "build"], env)
    tag = _latest_bento(env)
    bento_file = tmp_path / "service.bento"
    sh(["bentoml", "export", tag, str(bento_file)], env)
    fresh = env_for(tmp_path / "fresh_home")
    sh(["bentoml", "import", str(bento_file)], fresh)
    assert "ser_emotion" in sh(["bentoml", "models", "list"], fresh)  # the model came inside the Bento
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with Served(tag, env={"BENTOML_HOME": str(tmp_path / "fresh_home")}, cwd=outside) as url:
        body = post(url, wav_bytes(1.0)).json()
        assert body["model_version"] == home[1] and body["label"] in CLASSES
        assert post(url, wav_bytes(11.0)).status_code == 413  # the limits travelled in the model metadata


def _latest_bento(env: dict) -> str:
    bentos = json.loads(sh(["bentoml", "list", "-o", "json"], env))
    return sorted(bentos, key=lambda b: b["creation_time"])[-1]["tag"]


def test_cli_predict_against_the_running_service(server: str, tmp_path: Path) -> None:
    """`ser predict --url` uploads each file to /predict and prints its answer (errors name the file)."""
    from typer.testing import CliRunner

    from ser.cli import app

    (tmp_path / "clip.wav").write_bytes(wav_bytes(2.0))
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    ok = CliRunner().invoke(app, ["predict", str(tmp_path / "clip.wav"), "--url", server, "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)[0]["file"].endswith("clip.wav")
    asked = ["--profile", "studio", "--classes", "sad,neutral", "--json"]
    subset = CliRunner().invoke(app, ["predict", str(tmp_path / "clip.wav"), "--url", server, *asked])
    assert subset.exit_code == 0 and list(json.loads(subset.output)[0]["probabilities"]) == ["neutral", "sad"]
    unknown = CliRunner().invoke(app, ["predict", str(tmp_path / "clip.wav"), "--url", server, "--profile", "x"])
    assert unknown.exit_code == 2 and "the service answered 404: unknown profile 'x'" in unknown.output
    bad = CliRunner().invoke(app, ["predict", str(tmp_path / "junk.wav"), "--url", server])
    assert bad.exit_code == 2 and "junk.wav: the service answered 400" in bad.output
    clips = []
    for i in range(4):
        (tmp_path / f"s{i}.wav").write_bytes(wav_bytes(1.0 + i / 4))
        clips.append(str(tmp_path / f"s{i}.wav"))
    enrolled = CliRunner().invoke(app, ["predict", "--speaker", *clips, "--url", server, "--json"])
    assert enrolled.exit_code == 0, enrolled.output
    assert [a["file"] for a in json.loads(enrolled.output)] == clips
    few = CliRunner().invoke(app, ["predict", "--speaker", *clips[:2], "--url", server])
    assert few.exit_code == 2 and "the service answered 400: 2 file(s)" in few.output
