"""Tests for ser.data.synth: RAVDESS layout, determinism, audio sanity, emotion-dependent prosody."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from ser.data.synth import _combinations, generate_corpus, synth_clip
from ser.labels import EMOTIONS, parse_name

SR = 16000
MEL_BASIS = librosa.filters.mel(sr=SR, n_fft=512, n_mels=32)


def _f0(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """YIN f0 (Hz) on the louder (voiced-ish) frames of a clip."""
    f0 = librosa.yin(y, fmin=60, fmax=600, sr=sr, frame_length=800, hop_length=400)
    rms = librosa.feature.rms(y=y, frame_length=800, hop_length=400)[0][: f0.size]
    return f0[rms > 0.3 * rms.max()]


def _features(y: np.ndarray) -> np.ndarray:
    """Simple clip features: mean/std log-mel per band plus f0 statistics."""
    power = np.abs(librosa.stft(y, n_fft=512, hop_length=256)) ** 2
    mel = np.log(MEL_BASIS @ power + 1e-8)
    lf0 = np.log(_f0(y))
    return np.concatenate([mel.mean(1), mel.std(1), [lf0.mean(), lf0.std(), np.ptp(lf0)]])


def expected_combinations(n_actors: int) -> set[tuple[str, str, int, int, int]]:
    """The RAVDESS speech combination set, written out independently of ser.data.synth."""
    out = set()
    for actor in range(1, n_actors + 1):
        for emotion in EMOTIONS:
            for intensity in ("normal",) if emotion == "neutral" else ("normal", "strong"):
                for statement in (1, 2):
                    for repetition in (1, 2):
                        out.add((emotion, intensity, statement, repetition, actor))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return generate_corpus(tmp_path_factory.mktemp("synth"), n_actors=2, seed=0)


def test_layout_and_names(corpus: list[Path]) -> None:
    assert len(corpus) == 120 and corpus == sorted(corpus)
    got = set()
    for path in corpus:
        clip = parse_name(path)
        assert path.parent.name == f"Actor_{clip.actor:02d}" and path.suffix == ".wav"
        assert (clip.modality, clip.vocal_channel) == (3, 1)
        got.add((clip.emotion, clip.intensity, clip.statement, clip.repetition, clip.actor))
    assert got == expected_combinations(2)
    assert not [p for p in corpus[0].parent.parent.rglob("*") if p.is_file() and p not in corpus]


def test_audio_properties(corpus: list[Path]) -> None:
    for path in corpus[::7]:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        y, _ = sf.read(path, dtype="float32")
        assert 3.0 <= y.size / SR <= 4.5
        assert not np.isnan(y).any() and np.abs(y).max() < 0.95
        lead = y[: int(0.25 * SR)]  # before speech: a quiet noise floor, not digital zero
        assert 0 < np.sqrt(np.mean(lead**2)) < 0.01 < np.sqrt(np.mean(y**2))


def test_determinism(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", n_actors=1, seed=3)
    b = generate_corpus(tmp_path / "b", n_actors=1, seed=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert not list(tmp_path.rglob("*.tmp"))
    x = synth_clip("happy", "strong", 2, 1, 1, seed=3)
    stored = {parse_name(p).clip_id: p for p in a}["03-01-03-02-02-01-01"]
    assert np.abs(sf.read(stored, dtype="float32")[0] - x).max() <= 1 / 32768  # same clip
    assert not np.array_equal(x[:1000], synth_clip("happy", "strong", 2, 1, 1, seed=4)[:1000])
    assert not np.array_equal(x[:1000], synth_clip("happy", "strong", 2, 2, 1, seed=3)[:1000])


def test_emotion_prosody() -> None:
    def clips(emotion: str, intensity: str, actor: int) -> list[np.ndarray]:
        return [synth_clip(emotion, intensity, s, r, actor) for s in (1, 2) for r in (1, 2)]

    for actor in (1, 2):
        angry, sad = clips("angry", "strong", actor), clips("sad", "normal", actor)
        f0_angry = np.median(np.concatenate([_f0(y) for y in angry]))
        f0_sad = np.median(np.concatenate([_f0(y) for y in sad]))
        assert f0_angry > 1.1 * f0_sad
        rms_angry = np.mean([np.sqrt(np.mean(y**2)) for y in angry])
        rms_sad = np.mean([np.sqrt(np.mean(y**2)) for y in sad])
        assert rms_angry > 1.5 * rms_sad


def test_gender_pitch() -> None:
    male = [np.median(_f0(synth_clip("neutral", "normal", 1, 1, a))) for a in (1, 3, 5)]
    female = [np.median(_f0(synth_clip("neutral", "normal", 1, 1, a))) for a in (2, 4, 6)]
    assert max(male) < 165 < min(female)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_actors": 0}, "n_actors"),
        ({"n_actors": 100}, "n_actors"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_corpus_args(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        generate_corpus(tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("joy", "normal", 1, 1, 1), "emotion"),
        (("neutral", "strong", 1, 1, 1), "intensity"),
        (("sad", "normal", 3, 1, 1), "statement"),
        (("sad", "normal", 1, 0, 1), "repetition"),
        (("sad", "normal", 1, 1, 100), "actor"),
    ],
)
def test_bad_clip_args(args: tuple, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synth_clip(*args)


def test_bad_clip_sample_rate() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        synth_clip("sad", "normal", 1, 1, 1, sample_rate=7999)


def test_other_sample_rate() -> None:
    y = synth_clip("fearful", "strong", 1, 2, 4, sample_rate=22050)
    assert y.dtype == np.float32 and 3.0 <= y.size / 22050 <= 4.5 and np.abs(y).max() < 0.9


def test_learnable_across_actors() -> None:
    """Logistic regression on simple speaker-normalised features: train 3 actors, test the 4th."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats, labels, actors = [], [], []
    for actor in range(1, 5):
        for emotion, intensity, statement, repetition in _combinations():
            feats.append(_features(synth_clip(emotion, intensity, statement, repetition, actor)))
            labels.append(emotion)
            actors.append(actor)
    x, y, a = np.array(feats), np.array(labels), np.array(actors)
    for actor in range(1, 5):  # per-speaker z-scoring, a standard SER normalisation
        rows = a == actor
        x[rows] = (x[rows] - x[rows].mean(0)) / (x[rows].std(0) + 1e-6)
    accuracies = []
    for held_out in range(1, 5):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=3000))
        model.fit(x[a != held_out], y[a != held_out])
        accuracies.append(float(np.mean(model.predict(x[a == held_out]) == y[a == held_out])))
    print(f"held-out-actor accuracies {np.round(accuracies, 3)}, mean {np.mean(accuracies):.3f} (chance 0.125)")
    assert np.mean(accuracies) > 0.3 and min(accuracies) > 0.15
