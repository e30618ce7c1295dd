"""The serving front end: audio windows to the ONNX graph's input, in NumPy (no librosa, numba or TensorFlow).

What stays outside the exported graph (`ser.training.onnx_export`) is the part that is not a matrix product
or that needs float64 to equal training's features: each window's speech level (`ser.audio.normalise_level`)
and the log-mel (a centred periodic-Hann STFT, power 2, the mel bank librosa made at export time, dB floored
`top_db` under the window's peak: `librosa.power_to_db(melspectrogram(...), ref=1, top_db)`), scaled as
Whisper scales it for the `whisper` front end. It costs about 1 % of the encoder's time per window. A feature
kind describes its front end once (`FeatureKind.frontend`); the spec and arrays travel in `frontend.npz`
beside `model.onnx`.

    front = Frontend.load(model_dir)
    mel = front(windows)        # (clips, frames, mels) float32: the graph's input
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import numpy as np

FILE = "frontend.npz"
SCALES = ("db", "whisper")  # db: log-mel in dB (features.kind logmel); whisper: Whisper's (db / 10 + 4) / 4


def logmel_db(waves: np.ndarray, bank: np.ndarray, window: np.ndarray, hop: int, top_db: float) -> np.ndarray:
    """(clips, frames, mels) float32 dB of equal-length waves, librosa's definition in float64 (bank: bins x mels)."""
    n_fft = len(window)
    padded = np.pad(np.asarray(waves, np.float64), ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    db = 10.0 * np.log10(np.maximum(power @ bank, 1e-10))
    return np.maximum(db, db.max(axis=(1, 2), keepdims=True) - top_db).astype(np.float32)


class Frontend:
    """A model's front end: `spec` (scale, sample_rate, hop_length, top_db, level_db, context samples, frames)
    and `arrays` (mel_bank: bins x mels, window: the STFT window), both float64."""

    def __init__(self, spec: dict, arrays: dict[str, np.ndarray]) -> None:
        if spec.get("scale") not in SCALES:
            raise ValueError(f"{FILE}: scale {spec.get('scale')!r}; expected one of {', '.join(SCALES)}")
        self.spec, self.bank, self.window = spec, arrays["mel_bank"], arrays["window"]

    @classmethod
    def build(cls, scale: str, mel: dict, level_db: float | None, context: int, frames: int) -> Frontend:
        """A front end of `mel` settings (sample_rate, n_fft, hop_length, n_mels, fmin, fmax, top_db); the mel bank
        comes from librosa here, at export time, and travels as an array."""
        from ser.features.mel_bank import hann_window, mel_filters

        bank = mel_filters(*(mel[k] for k in ("sample_rate", "n_fft", "n_mels", "fmin", "fmax"))).astype(np.float64)
        spec = {"scale": scale, "level_db": level_db, "context": context, "frames": frames}
        spec |= {k: mel[k] for k in ("sample_rate", "hop_length", "top_db")}
        return cls(spec, {"mel_bank": bank, "window": hann_window(mel["n_fft"], np.float64)})

    @classmethod
    def load(cls, model_dir: Path) -> Frontend:
        with np.load(Path(model_dir) / FILE, allow_pickle=False) as npz:
            return cls(json.loads(str(npz["spec"])), {k: npz[k] for k in ("mel_bank", "window")})

    def save(self, path: Path | BinaryIO) -> None:
        np.savez(path, spec=np.array(json.dumps(self.spec)), mel_bank=self.bank, window=self.window)

    @property
    def shape(self) -> tuple[int, int]:
        """(frames, mels) of one window's front-end output: the graph's input shape."""
        return int(self.spec["frames"]), int(self.bank.shape[1])

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        """The graph input of (clips, samples) windows at the model rate."""
        s = self.spec
        waves = np.atleast_2d(np.asarray(waves, np.float32))
        if s.get("level_db") is not None:  # a recording's gain says nothing of the emotion (features.level_db)
            from ser.audio import normalise_level

            waves = normalise_level(waves, s["sample_rate"], s["level_db"])
        if s.get("context", 0) > waves.shape[1]:  # Whisper's input: speech, then zeros
            waves = np.pad(waves, ((0, 0), (0, s["context"] - waves.shape[1])))
        db = logmel_db(waves, self.bank, self.window, s["hop_length"], s["top_db"])
        if s["scale"] == "whisper":  # Whisper drops the STFT's last frame, then scales
            return np.ascontiguousarray((db[:, :-1] / 10.0 + 4.0) / 4.0, dtype=np.float32)
        return db
