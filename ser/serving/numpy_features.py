"""The feature kinds' inference in plain NumPy (no TensorFlow, numba or librosa): `ser predict`'s quick path.

`ser.features` stays the one definition of the features; this is a second, slower-per-clip but
instant-to-start evaluation of the same functions for a few windows, checked against them in
tests/unit/serving/test_numpy_features.py:
  * `logmel`: librosa's `power_to_db(melspectrogram(...), ref=1, top_db)` in float64 (centred
    periodic-Hann STFT with zero padding, power 2, the Slaney mel bank `export_features` stored);
  * `whisper_states`: Whisper base's encoder (`ser.features.whisper_encoder`'s graph: two GELU
    convolutions, sinusoidal positions, pre-norm attention blocks) in float32, stopped at the deepest
    layer asked for, from the verified weights `export_features` copied.

    spec, arrays = export_features(params)          # needs ser.features (once)
    feats = features(spec, arrays, windows)         # NumPy + scipy.special only
"""

from __future__ import annotations

import numpy as np

from ser.config import FeatureParams

HEADS = 8  # Whisper base's attention heads


def export_features(params: FeatureParams) -> tuple[dict, dict[str, np.ndarray]]:
    """(spec, arrays) for `features`: the mel bank and window, and the encoder's weights for whisper_base.

    Raises:
        ValueError: a feature kind without a NumPy path here.
    """
    from ser.features.mel_bank import hann_window, mel_filters

    arrays: dict[str, np.ndarray] = {}
    if params.kind == "logmel":
        mel = {k: getattr(params, k) for k in ("sample_rate", "n_fft", "n_mels", "fmin", "fmax")}
        spec = {"kind": "logmel", "n_fft": params.n_fft, "hop_length": params.hop_length, "top_db": params.top_db}
    elif params.kind == "whisper_base":
        from ser.features import whisper
        from ser.features.whisper_encoder import LAYERS, read_variables

        mel = {k: whisper.MEL[k] for k in ("sample_rate", "n_fft", "n_mels", "fmin", "fmax")}
        spec = {"kind": "whisper_base", "n_fft": mel["n_fft"], "hop_length": whisper.MEL["hop_length"]}
        spec |= {"top_db": whisper.MEL["top_db"], "layers": list(params.whisper_layers), "depth": LAYERS}
        spec["context"] = round(params.whisper_context * whisper.SAMPLE_RATE)  # samples; 0: the window as is
        deepest = max(params.whisper_layers)
        keep = ("conv", "position") + tuple(f"layer_{i}/" for i in range(deepest)) + (("layer_norm/",) * (deepest == 6))
        weights = read_variables(whisper.model_dir() / "model.bin")
        arrays = {f"encoder/{k}": v for k, v in weights.items() if k.startswith(keep)}
    else:
        raise ValueError(f"features.kind {params.kind!r}: no NumPy path")
    spec |= {"level_db": params.level_db, "sample_rate": mel["sample_rate"]}  # level_db None: windows as they come
    spec["frame_norm"] = params.frame_norm
    arrays["mel_bank"] = mel_filters(**mel).astype(np.float64)  # (bins, mels)
    arrays["window"] = hann_window(spec["n_fft"], np.float64)
    return spec, arrays


def logmel(waves: np.ndarray, bank: np.ndarray, window: np.ndarray, hop: int, top_db: float) -> np.ndarray:
    """(clips, frames, mels) float32 dB of equal-length waves, librosa's definition in float64 (bank: bins x mels)."""
    n_fft = len(window)
    padded = np.pad(np.asarray(waves, np.float64), ((0, 0), (n_fft // 2, n_fft // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    db = 10.0 * np.log10(np.maximum(power @ bank, 1e-10))
    return np.maximum(db, db.max(axis=(1, 2), keepdims=True) - top_db).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2))))


def _norm(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(1e-5)) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return x @ w[f"{name}/weight"].T + w[f"{name}/bias"]


def _conv(x: np.ndarray, w: dict, name: str, stride: int) -> np.ndarray:
    kernel = w[f"{name}/weight"]  # CTranslate2's (out, in, width); padding 1 each side as in Whisper
    width = kernel.shape[-1]
    x = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    frames = (x.shape[1] - width) // stride + 1
    cols = np.concatenate([x[:, j : j + (frames - 1) * stride + 1 : stride] for j in range(width)], -1)
    return cols @ kernel.transpose(2, 1, 0).reshape(-1, kernel.shape[0]) + w[f"{name}/bias"]


def whisper_states(mel: np.ndarray, w: dict, layers: list[int], depth: int) -> np.ndarray:
    """Encoder states of `layers` side by side for Whisper log-mels (batch, frames, 80)."""
    x = _gelu(_conv(_gelu(_conv(mel, w, "conv1", 1)), w, "conv2", 2))
    batch, frames, width = x.shape
    x = x + w["position_encodings/encodings"][:frames]
    states = [x]
    for i in range(min(max(layers), depth)):
        block = f"layer_{i}"
        qkv = _dense(_norm(x, w, f"{block}/self_attention/layer_norm"), w, f"{block}/self_attention/linear_0")
        q, k, v = (t.reshape(batch, frames, HEADS, -1).transpose(0, 2, 1, 3) for t in np.split(qkv, 3, -1))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(width // HEADS))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        mixed = (scores / scores.sum(-1, keepdims=True)) @ v
        x = x + _dense(mixed.transpose(0, 2, 1, 3).reshape(batch, frames, width), w, f"{block}/self_attention/linear_1")
        hidden = _gelu(_dense(_norm(x, w, f"{block}/ffn/layer_norm"), w, f"{block}/ffn/linear_0"))
        x = x + _dense(hidden, w, f"{block}/ffn/linear_1")
        states.append(x)
    if max(layers) == depth:
        states[-1] = _norm(x, w, "layer_norm")
    return np.concatenate([states[i] for i in layers], -1).astype(np.float32)


def features(spec: dict, arrays: dict[str, np.ndarray], waves: np.ndarray) -> np.ndarray:
    """The model input (clips, frames, width) of equal-length windows, as `ser.features.extract` computes it."""
    feats = kind_features(spec, arrays, waves)
    if spec.get("frame_norm"):  # models exported before features.frame_norm have none
        from ser.features import frame_normalise

        feats = frame_normalise(feats)
    return feats


def kind_features(spec: dict, arrays: dict[str, np.ndarray], waves: np.ndarray) -> np.ndarray:
    """The feature kind's own output for the windows (`features` adds the frame normalisation)."""
    if spec.get("level_db") is not None:  # models exported before features.level_db have none
        from ser.audio import normalise_level

        waves = normalise_level(waves, spec["sample_rate"], spec["level_db"])
    if spec["kind"] == "logmel":
        return logmel(waves, arrays["mel_bank"], arrays["window"], spec["hop_length"], spec["top_db"])
    frames = (waves.shape[1] // spec["hop_length"] + 1) // 2  # the window's own states (whisper.output_frames)
    context = spec.get("context", 0)  # models exported before features.whisper_context have none
    if context > waves.shape[1]:
        waves = np.pad(waves, ((0, 0), (0, context - waves.shape[1])))
    db = logmel(waves, arrays["mel_bank"], arrays["window"], spec["hop_length"], spec["top_db"])
    mel = (db[:, :-1] / 10.0 + 4.0) / 4.0  # Whisper drops the STFT's last frame, then scales as Whisper does
    weights = {k[len("encoder/") :]: v for k, v in arrays.items() if k.startswith("encoder/")}
    return whisper_states(mel.astype(np.float32), weights, spec["layers"], spec["depth"])[:, :frames]
