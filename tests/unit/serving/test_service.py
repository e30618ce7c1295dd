"""EmotionService called directly (no HTTP): predictions, long clips, batches, every bad input.

A tiny untrained model is packaged into a tmp BENTOML_HOME for this module;
the service module is (re)imported after that so its class-level model
reference and limits resolve there. The model carries an enrolment head, for `/predict_speaker`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from pathlib import Path

import numpy as np
import pytest

from tests.support import CLASSES, SERVE, audio_bytes, bad_uploads, tone, wav_bytes

STORE_PROVIDERS = (
    "bentoml_home",
    "model_store_dir",
    "model_store",
    "bento_store_dir",
    "bento_store",
    "tmp_bento_store_dir",
    "tmp_bento_store",
    "env_store_dir",
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    from bentoml._internal.configuration.containers import BentoMLContainer

    from tests.support import package_tiny_model

    work = tmp_path_factory.mktemp("service")
    old = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    for name in STORE_PROVIDERS:
        getattr(BentoMLContainer, name).reset()
    summary = package_tiny_model(work, enrolment=True)
    module = importlib.reload(importlib.import_module("ser.serving.service"))
    yield module.EmotionService(), summary, module
    if old is None:
        os.environ.pop("BENTOML_HOME", None)
    else:
        os.environ["BENTOML_HOME"] = old
    for name in STORE_PROVIDERS:
        getattr(BentoMLContainer, name).reset()


def upload(tmp_path: Path, data: bytes, name: str = "clip.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def predict(service, path: Path):
    return asyncio.run(service[0].predict(audio=path))


def test_predict_short_clip(service, tmp_path: Path) -> None:
    result = predict(service, upload(tmp_path, wav_bytes(1.0)))
    assert result.label in CLASSES
    assert set(result.probabilities) == set(CLASSES)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    assert result.model_version == service[1]["tag"]
    assert len(result.windows) == 1 and result.notes == []


def test_same_features_and_model_as_training(service, tmp_path: Path) -> None:
    """The service's answer (the exported graph in onnxruntime) equals logmel + Keras predict on the training window
    within 1e-4."""
    from ser.audio import fixed_window, load_audio
    from ser.features.logmel import logmel
    from ser.training.model import load_model

    svc = service[0]
    path = upload(tmp_path, wav_bytes(1.0))
    p = svc.predictor.params
    feats = logmel(fixed_window(load_audio(path, p.sample_rate), p.sample_rate, p.offset, p.duration), p)
    expected = load_model(Path(svc.model.path) / "model.keras").predict(feats, verbose=0)[0]
    got = predict(service, path).probabilities
    np.testing.assert_allclose([got[c] for c in CLASSES], expected, atol=1e-4)


@pytest.mark.parametrize(
    ("fmt", "subtype", "name"),
    [("FLAC", None, "a.flac"), ("OGG", "VORBIS", "a.ogg"), ("MP3", "MPEG_LAYER_III", "a.mp3")],
)
def test_formats(service, tmp_path: Path, fmt: str, subtype: str | None, name: str) -> None:
    result = predict(service, upload(tmp_path, audio_bytes(tone(1.0, 16000), 16000, fmt, subtype), name))
    assert result.label in CLASSES


def test_long_clip_windows_and_aggregate(service, tmp_path: Path) -> None:
    result = predict(service, upload(tmp_path, wav_bytes(3.2, rate=44100, channels=2)))
    starts = [w.start_s for w in result.windows]
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])  # 1 s windows every 0.5 s
    mean = np.mean([[w.probabilities[c] for c in CLASSES] for w in result.windows], axis=0)
    np.testing.assert_allclose([result.probabilities[c] for c in CLASSES], mean, atol=1e-5)
    assert result.label == CLASSES[int(mean.argmax())]
    assert result.source_sample_rate == 44100 and result.duration_s == pytest.approx(3.2, abs=1e-3)
    assert any("averaged to mono" in n for n in result.notes) and any("resampled" in n for n in result.notes)


def test_predict_batch(service, tmp_path: Path) -> None:
    paths = [upload(tmp_path, wav_bytes(s), f"c{i}.wav") for i, s in enumerate((0.5, 1.0, 2.5))]
    results = asyncio.run(service[0].predict_batch(audios=paths))
    assert [len(r.windows) for r in results] == [1, 1, 4]
    single = predict(service, paths[1])
    assert results[1].probabilities == pytest.approx(single.probabilities, abs=1e-5)


def test_concurrent_requests_share_batches(service, tmp_path: Path) -> None:
    svc = service[0]
    paths = [upload(tmp_path, wav_bytes(1.0 + i / 10), f"c{i}.wav") for i in range(12)]

    async def many():
        return await asyncio.gather(*(svc.predict(audio=p) for p in paths))

    before = svc.batcher.shared_calls
    results = asyncio.run(many())
    assert len(results) == 12 and all(r.label in CLASSES for r in results)
    assert svc.batcher.shared_calls > before  # requests shared model calls


BAD = bad_uploads()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_a_clear_4xx(service, tmp_path: Path, case: str) -> None:
    from bentoml.exceptions import BentoMLException

    make, status, message = BAD[case]
    with pytest.raises(BentoMLException) as err:
        predict(service, upload(tmp_path, make()))
    assert err.value.error_code.value == status
    assert message in str(err.value)
    assert predict(service, upload(tmp_path, wav_bytes(1.0), "ok.wav")).label in CLASSES  # still serving


def test_batch_names_the_bad_file(service, tmp_path: Path) -> None:
    """Called directly (no upload gate, so no client names): the file's index; over HTTP also its name."""
    from ser.serving.errors import ClientError

    paths = [upload(tmp_path, wav_bytes(1.0), "good.wav"), upload(tmp_path, b"junk" * 100, "bad.wav")]
    with pytest.raises(ClientError, match=r"file 1: not a readable audio file") as err:
        asyncio.run(service[0].predict_batch(audios=paths))
    assert err.value.code == "unsupported_format" and err.value.error_code == 400


def test_limits_come_from_model_metadata(service) -> None:
    svc = service[0]
    assert svc.limits.max_duration_s == SERVE["max_duration_s"]
    assert svc.limits.max_upload_bytes == SERVE["max_upload_mb"] * 2**20
    assert svc.predictor.max_batch == SERVE["max_batch_size"]


def test_predict_speaker_scores_the_clips_against_their_own_mean(service, tmp_path: Path) -> None:
    """Enrolment mode: the same clips as /predict_batch, each answer the mean of the model's probabilities and
    the enrolment head's on the clip's statistics minus the speaker's mean over the clips sent."""
    svc = service[0]
    paths = [
        upload(tmp_path, audio_bytes(tone(s, freq=f)), f"s{i}.wav")
        for i, (s, f) in enumerate([(1.0, 180.0), (1.5, 220.0), (2.0, 300.0), (2.5, 260.0), (6.0, 200.0)])
    ]
    answer = asyncio.run(svc.predict_speaker(audios=paths))
    single = asyncio.run(svc.predict_batch(audios=paths))
    assert answer.reference_clips == 5 and len(answer.clips) == 5 and answer.label in CLASSES
    assert [len(c.windows) for c in answer.clips] == [len(c.windows) for c in single]  # the long clip: a timeline
    from ser.serving.uploads import decode_upload

    rate = svc.predictor.params.sample_rate
    feats = [svc.predictor.featurize(decode_upload(p, rate, svc.limits).wave)[0] for p in paths]
    stats = [svc.predictor.run(f)[1] for f in feats]
    speaker_mean = np.mean([s.mean(0) for s in stats], axis=0)
    head = svc.predictor.enrolment
    for clip, one, f, s in zip(answer.clips, single, feats, stats, strict=True):
        model_probs = np.array([[w.probabilities[c] for c in CLASSES] for w in one.windows])
        expected = (model_probs + head.probs(s, speaker_mean)) / 2
        got = np.array([[w.probabilities[c] for c in CLASSES] for w in clip.windows])
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert f.shape[0] == len(clip.windows)
    overall = np.mean([[c.probabilities[k] for k in CLASSES] for c in answer.clips], axis=0)
    assert answer.probabilities == pytest.approx(dict(zip(CLASSES, overall, strict=True)), abs=1e-5)
    # the enrolment answer differs from the single-clip one: the speaker's mean moved it
    assert any(
        max(abs(c.probabilities[k] - o.probabilities[k]) for k in CLASSES) > 1e-3
        for c, o in zip(answer.clips, single, strict=True)
    )


def test_predict_speaker_refuses_fewer_clips_than_the_minimum_and_names_it(service, tmp_path: Path) -> None:
    from ser.serving.errors import ClientError

    paths = [upload(tmp_path, wav_bytes(1.0 + i / 4), f"c{i}.wav") for i in range(3)]
    for few in (paths, []):
        with pytest.raises(ClientError, match=r"needs at least 4 clips of one speaker") as err:
            asyncio.run(service[0].predict_speaker(audios=few))
        assert err.value.code == "too_few_clips" and err.value.error_code == 400
    bad = [*paths, upload(tmp_path, b"junk" * 100, "bad.wav")]
    with pytest.raises(ClientError, match=r"file 3: not a readable audio file"):
        asyncio.run(service[0].predict_speaker(audios=bad))


def test_predict_speaker_on_a_model_without_an_enrolment_head_is_a_404(
    service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ser.serving.errors import ClientError

    monkeypatch.setattr(service[0].predictor, "enrolment", None)  # as a model trained with enrolment.head false
    paths = [upload(tmp_path, wav_bytes(1.0), f"c{i}.wav") for i in range(4)]
    with pytest.raises(ClientError, match=r"has no enrolment head.*use /predict") as err:
        asyncio.run(service[0].predict_speaker(audios=paths))
    assert err.value.code == "no_enrolment" and err.value.error_code == 404
