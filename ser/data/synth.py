"""Deterministic, seeded generator of speech-like audio, in RAVDESS layout or as a labelled folder.

Stands in for the real corpus in tests and demos: every clip is a source-filter
"utterance" (Rosenberg glottal pulses with jitter, aspiration and frication noise,
four gliding formants applied per STFT frame) whose prosody depends on the emotion,
the intensity and a per-actor voice. Same arguments give bit-identical files.

    >>> from pathlib import Path
    >>> paths = generate_corpus(Path("data/synth"), n_actors=2, seed=0)  # doctest: +SKIP

`ser.data.synth_labelled` writes the same voices as a user's own labelled folder would come.
From a shell: ``ser data synth --out data/synth --actors 24`` (``--layout labelled`` for the other).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from ser.labels import EMOTIONS, INTENSITIES, clip_name

# Male vowel formants F1..F3 (Hz); "aI" glides from "a" to "i".
_VOWELS = {
    "I": (400, 1900, 2550),
    "a": (730, 1100, 2450),
    "O": (570, 850, 2400),
    "@": (500, 1500, 2500),
    "i": (300, 2200, 3000),
}
# Consonant: (kind, noise centre Hz, duration s, voiced).
_CONS = {
    "k": ("stop", 2200, 0.07, False),
    "t": ("stop", 4000, 0.07, False),
    "d": ("stop", 3500, 0.05, True),
    "b": ("stop", 1000, 0.05, True),
    "s": ("fric", 5500, 0.10, False),
    "z": ("fric", 5000, 0.07, True),
    "dh": ("fric", 3000, 0.04, True),
    "ng": ("nasal", 0, 0.06, True),
    "r": ("r", 0, 0.06, True),
}
# (onset, vowel, coda, stressed): "Kids are talking by the door" / "Dogs are sitting by the door".
_STATEMENTS = (
    (
        ("k", "I", "z", 1),
        ("", "a", "", 0),
        ("t", "O", "", 1),
        ("k", "I", "ng", 0),
        ("b", "aI", "", 1),
        ("dh", "@", "", 0),
        ("d", "O", "r", 1),
    ),
    (
        ("d", "O", "z", 1),
        ("", "a", "", 0),
        ("s", "I", "", 1),
        ("t", "I", "ng", 0),
        ("b", "aI", "", 1),
        ("dh", "@", "", 0),
        ("d", "O", "r", 1),
    ),
)
# Deviations from neutral: pitch (st), log range, log rate, loudness (dB), tilt (dB/oct,
# + = flatter/pressed), breathiness, jitter, final glide (st).
_DEV = np.array(
    [
        [0.0, 0.00, 0.00, 0.0, 0.0, 0.00, 0.000, 0.0],  # neutral
        [-1.0, -0.15, -0.10, -3.0, -1.0, 0.15, 0.000, 0.0],  # calm
        [2.5, 0.35, 0.05, 3.0, 1.0, 0.00, 0.005, 1.5],  # happy
        [-1.5, -0.40, -0.20, -4.0, -2.0, 0.25, 0.005, -1.5],  # sad
        [3.0, 0.30, 0.08, 6.0, 3.0, -0.10, 0.010, -1.0],  # angry
        [4.0, 0.10, 0.12, 1.5, 0.5, 0.15, 0.030, 1.0],  # fearful
        [-0.5, 0.10, -0.12, 1.0, 0.5, 0.10, 0.015, -2.0],  # disgust
        [3.5, 0.50, 0.00, 2.5, 1.0, 0.05, 0.005, 5.0],  # surprised
    ]
)
_BASE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.15, 0.008, -2.0])
_CLIP_SD = np.array([0.8, 0.12, 0.06, 1.5, 0.8, 0.05, 0.003, 1.0])
_ACTOR_SD = np.array([1.0, 0.10, 0.05, 1.5, 0.8, 0.05, 0.004, 1.5])


def _combinations() -> Iterator[tuple[str, str, int, int]]:
    """Yield the 60 RAVDESS speech (emotion, intensity, statement, repetition) tuples."""
    for emotion in EMOTIONS:
        for intensity in INTENSITIES[:1] if emotion == "neutral" else INTENSITIES:
            for statement in (1, 2):
                for repetition in (1, 2):
                    yield emotion, intensity, statement, repetition


def check_range(name: str, value: int, low: int, high: float) -> None:
    """Raise ValueError naming `name` unless low <= value <= high."""
    if not low <= value <= high:
        rule = f">= {low}" if high == float("inf") else f"in {low}..{high}"
        raise ValueError(f"{name} must be {rule}, got {value}")


def _voice(seed: int, actor: int) -> dict:
    """Per-actor voice parameters, derived deterministically from (seed, actor)."""
    rng = np.random.default_rng([seed, 1, actor])
    male = actor % 2 == 1
    return {
        "f0": rng.uniform(90, 140) if male else rng.uniform(175, 235),
        "fscale": (1.0 if male else 1.17) * rng.uniform(0.95, 1.05),
        "breath": rng.uniform(0.0, 0.2) + (0.0 if male else 0.08),
        "rate": rng.uniform(0.9, 1.1),
        "expr": rng.uniform(0.75, 1.3),
        "gain_db": rng.uniform(-3, 3),
        "bias": rng.normal(0, 1, (len(EMOTIONS), 8)) * _ACTOR_SD,
    }


def synth_clip(
    emotion: str, intensity: str, statement: int, repetition: int, actor: int, seed: int = 0, sample_rate: int = 16000
) -> np.ndarray:
    """Return one clip as float32 mono samples in [-1, 1].

    Args:
        emotion: one of `ser.labels.EMOTIONS`.
        intensity: "normal" or "strong" ("neutral" has only "normal").
        statement: 1 or 2. repetition: 1 or 2. actor: 1..99 (odd male, even female).
        seed: corpus seed (>= 0); sample_rate: Hz, >= 8000.

    Raises:
        ValueError: for any argument outside the RAVDESS speech vocabulary.
    """
    if emotion not in EMOTIONS or intensity not in INTENSITIES:
        raise ValueError(f"emotion/intensity must be in {EMOTIONS}/{INTENSITIES}, got {emotion!r}/{intensity!r}")
    if emotion == "neutral" and intensity == "strong":
        raise ValueError("intensity must be 'normal' for emotion 'neutral' (as in RAVDESS)")
    for name, value, low, high in (
        ("statement", statement, 1, 2),
        ("repetition", repetition, 1, 2),
        ("actor", actor, 1, 99),
        ("seed", seed, 0, float("inf")),
        ("sample_rate", sample_rate, 8000, float("inf")),
    ):
        check_range(name, value, low, high)
    e, strong = EMOTIONS.index(emotion), intensity == "strong"
    voice = _voice(seed, actor)
    rng = np.random.default_rng([seed, 2, actor, e, int(strong), statement, repetition])
    k = voice["expr"] * (1.6 if strong else 1.0)
    p = _BASE + k * (_DEV[e] + voice["bias"][e] * (e > 0)) + rng.normal(0, 1, 8) * _CLIP_SD
    pitch, rng_range, rate = p[0], np.exp(p[1]), np.exp(p[2]) * voice["rate"]
    loud_db, tilt = p[3] + (3.0 if strong else 0.0) + voice["gain_db"], p[4]
    breath, jitter, final = np.clip(p[5] + voice["breath"], 0.02, 0.8), max(p[6], 0.002), p[7]

    hop = sample_rate // 125  # parameter frames at 125 Hz; STFT hop = hop, window 4 * hop
    fr = sample_rate / hop
    syl = _STATEMENTS[statement - 1]
    durs = np.array([0.26 if s[3] else 0.17 for s in syl]) * rng.lognormal(0, 0.1, len(syl)) / rate
    durs *= min(1.0, 3.3 / durs.sum())  # so that pre + speech + 0.3 s tail fits in 4.5 s
    pre = rng.uniform(0.3, 0.9)
    total = max(3.0, min(4.5, pre + durs.sum() + rng.uniform(0.5, 1.8)))
    nf = int(total * fr) + 1
    voi, fric, fc = np.zeros(nf), np.zeros(nf), np.full(nf, 3000.0)
    fmt, st = np.zeros((nf, 3)), np.zeros(nf)
    t = pre
    for i, ((on, vow, coda, stress), d) in enumerate(zip(syl, durs, strict=True)):
        a, b = int(t * fr), int((t + d) * fr)
        amp = (1.0 if stress else 0.7) * rng.uniform(0.85, 1.15)
        fmt[a:b] = _VOWELS["a" if vow == "aI" else vow]
        if vow == "aI":
            fmt[(a + b) // 2 : b] = _VOWELS["i"]
        voi[a:b] = amp
        accent = rng_range * ((2.0 if stress else 0.3) + rng.normal(0, 0.6))
        st[a:b] = pitch + accent - rng_range * 3.0 * i / len(syl)
        if i == len(syl) - 1:
            st[(a + b) // 2 : b] += np.linspace(0, final, b - (a + b) // 2)
        if on:
            kind, cf, cd, voiced = _CONS[on]
            c = a + max(1, int(cd / rate * fr))
            voi[a:c] = 0.2 if voiced else 0.0
            if kind == "stop":
                fric[c - 2 : c], fc[a:c] = 0.8, cf
            else:
                fric[a:c], fc[a:c] = (0.4 if on == "dh" else 1.0), cf
        if coda:
            kind, cf, cd, voiced = _CONS[coda]
            c = b - max(1, int(cd / rate * fr))
            if kind == "fric":
                voi[c:b], fric[c:b], fc[c:b] = 0.3, 0.8, cf
            else:
                voi[c:b] *= 0.5 if kind == "nasal" else 0.9
                fmt[c:b] = (300, 1200, 2500) if kind == "nasal" else (450, 1200, 1700)
        t += d
    a0, b0 = int(pre * fr), int(t * fr)
    fmt[:a0], fmt[b0:] = fmt[a0], fmt[b0 - 1]
    st[:a0], st[b0:] = st[a0], st[b0 - 1]
    fmt = uniform_filter1d(fmt, 6, axis=0) * voice["fscale"]
    st, voi, fric = uniform_filter1d(st, 10), uniform_filter1d(voi, 3), uniform_filter1d(fric, 2)

    # Source: controls on a 400 Hz grid (jitter/shimmer wobble), then interpolated to samples.
    n = int(total * sample_rate)
    tj, tf = np.arange(int(total * 400) + 2) / 400, np.arange(nf) / fr
    wobble = rng.normal(0, 1, tj.size)
    f0j = voice["f0"] * 2 ** (np.interp(tj, tf, st) / 12) * (1 + jitter * wobble)
    ts = np.arange(n) / sample_rate
    f0 = np.interp(ts, tj, f0j)
    voi_s = np.interp(ts, tj, np.interp(tj, tf, voi) * (1 + 3 * jitter * wobble))
    phase = np.cumsum(f0 / sample_rate) % 1.0
    # Rosenberg glottal flow via a 4096-point table; its derivative drives the tract.
    oq = float(np.clip(0.6 - 0.04 * tilt + 0.3 * breath, 0.35, 0.9))
    tp, tn, ph = 0.6 * oq, 0.4 * oq, np.arange(4096) / 4096
    table = np.where(
        ph < tp, 0.5 - 0.5 * np.cos(np.pi * ph / tp), np.where(ph < oq, np.cos(np.pi * (ph - tp) / (2 * tn)), 0.0)
    )
    idx = (phase * 4096).astype(np.intp)
    glottal = np.diff(table[idx], prepend=0.0) * sample_rate / f0
    noise = rng.random((2, n)) - 0.5
    src_v = voi_s * (glottal + 2 * breath * noise[0] * (0.5 + (idx < oq * 4096)))
    src_n = np.interp(ts, tf, fric) * noise[1]

    # Per-frame spectral envelopes applied by STFT filtering (hann, hop = win / 4), only
    # on frames whose window touches a non-zero source.
    win = 4 * hop
    freqs = np.fft.rfftfreq(win, 1 / sample_rate)
    act_v, act_n = maximum_filter1d(voi > 1e-4, 5), maximum_filter1d(fric > 1e-4, 5)
    f4 = np.column_stack([fmt, np.full(nf, 3500.0 * voice["fscale"])])[act_v]
    bw = 50 + 0.06 * f4 + np.array([40 * breath, 0, 0, 0])
    ff2, ev = freqs**2, (np.maximum(freqs, 60) / 500) ** (tilt / 20)
    for j in range(4):
        fj2 = f4[:, j, None] ** 2
        ev = ev * (fj2 / np.sqrt((fj2 - ff2) ** 2 + bw[:, j, None] ** 2 * ff2))
    cfs, inv = np.unique(fc[act_n], return_inverse=True)
    ef = np.exp(-0.5 * (np.log2(np.maximum(freqs, 60)[None, :] / cfs[:, None]) / 0.5) ** 2)[inv]
    window = np.hanning(win + 1)[:-1]

    def stft(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        x = np.pad(x, (win // 2, nf * hop + win - n))
        frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:nf][rows]
        return np.fft.rfft(frames * window, axis=1)

    spec = np.zeros((nf, freqs.size), complex)
    spec[act_v] = stft(src_v, act_v) * ev
    spec[act_n] += stft(src_n, act_n) * ef
    act = act_v | act_n
    yf = np.zeros((nf, win))
    yf[act] = np.fft.irfft(spec[act], win, axis=1) * window
    blocks = np.zeros((nf + 3, hop))
    for c in range(4):
        blocks[c : c + nf] += yf[:, c * hop : (c + 1) * hop]
    y = blocks.ravel()[win // 2 : win // 2 + n] / 1.5

    span = y[int(pre * sample_rate) : int(t * sample_rate)]
    y *= 0.04 * 10 ** (loud_db / 20) / (np.sqrt(np.mean(span**2)) + 1e-9)
    y += rng.standard_normal(n, dtype=np.float32) * 8e-4  # recording noise floor (~ -62 dBFS)
    return (0.9 * np.tanh(y / 0.9)).astype(np.float32)


def generate_corpus(out_dir: Path, n_actors: int = 8, seed: int = 0, sample_rate: int = 16000) -> list[Path]:
    """Write Actor_XX/03-01-EE-II-SS-RR-AA.wav files (16-bit PCM mono WAV) under out_dir.

    Each file is written to a temporary name and moved into place with os.replace.

    Args:
        out_dir: root folder (created when missing).
        n_actors: 1..99 actors (60 clips each); odd numbers male, even female.
        seed: corpus seed (>= 0); different seeds give different corpora.
        sample_rate: Hz, >= 8000.

    Returns:
        The written paths, sorted.

    Raises:
        ValueError: naming the argument when n_actors, seed or sample_rate is out of range.
    """
    check_range("n_actors", n_actors, 1, 99)
    check_range("seed", seed, 0, float("inf"))
    check_range("sample_rate", sample_rate, 8000, float("inf"))
    paths = []
    for actor in range(1, n_actors + 1):
        for emotion, intensity, statement, repetition in _combinations():
            y = synth_clip(emotion, intensity, statement, repetition, actor, seed, sample_rate)
            path = (
                Path(out_dir)
                / f"Actor_{actor:02d}"
                / f"{clip_name(emotion, intensity, statement, repetition, actor)}.wav"
            )
            write_wav(path, y, sample_rate)
            paths.append(path)
    return sorted(paths)


def write_wav(path: Path, y: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV, written to a temporary name and moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sf.write(tmp, y, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
