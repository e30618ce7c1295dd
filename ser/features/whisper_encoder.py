"""Whisper-base's encoder in TensorFlow, read from CTranslate2's `model.bin`, returning any of its layers.

CTranslate2 returns only the encoder's last layer, and on RAVDESS the middle layers carry more of the
emotion (README, experiment-log run R: a linear probe scores layer 3 or 4 above layer 6). So the
encoder runs here: the same weights (`ser.features.whisper.model_dir`, SHA-256 checked) in float32, the same
graph as openai/whisper's `AudioEncoder` (two GELU convolutions, sinusoidal positions, pre-norm
attention blocks, a final layer norm), stopped after the deepest layer asked for. Its last layer
matches CTranslate2 4.8.5 to ~1e-3 (tests/unit/features/test_whisper.py holds CTranslate2's numbers).

The graph is XLA-compiled (`jit_compile`): on 2 Zen 4 cores a 3.5 s window costs 20 ms alone and 14.5 ms
in a batch of 8 (23 and 17 ms without XLA), and XLA's results hardly depend on the batch: a window's
states are bit-identical alone, in a batch or beside zero padding on Zen 4, and within 1.4e-4 on Zen 3,
which lacks AVX-512 (measured; oneDNN's unfused graph shifts them by ~1e-3 with the batch size). So
training and serving may batch windows freely. XLA compiles once per input shape, about 1 s each.

    encode = layer_encoder(model_dir() / "model.bin", (3, 4))
    states = encode(mel)  # mel (1, frames, 80) -> (1, frames / 2, 1024): layers 3 and 4 side by side
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

LAYERS = 6  # transformer blocks in Whisper base; layer 0 is the convolutions' output, 6 the final norm's
HEADS = 8
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)  # CTranslate2's type ids 0-4


def read_variables(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables under `prefix` of a CTranslate2 model file (binary version 6), as float32 arrays.

    Raises:
        ValueError: the file is not a CTranslate2 model of a version this reader knows.
    """
    data, offset = memoryview(Path(path).read_bytes()), 0

    def take(fmt: str) -> int:
        nonlocal offset
        (value,) = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return value

    def text() -> str:
        nonlocal offset
        size = take("H")
        offset += size
        return bytes(data[offset - size : offset - 1]).decode()

    version = take("I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 model binary version {version}, expected 6")
    text(), take("I")  # the spec's name and revision
    out = {}
    for _ in range(take("I")):
        name = text()
        shape = [take("I") for _ in range(take("B"))]
        dtype, size = np.dtype(_DTYPES[take("B")]), take("I")
        if name.startswith(prefix) and dtype.kind == "f":
            out[name[len(prefix) :]] = np.frombuffer(data, dtype, size // dtype.itemsize, offset).reshape(shape)
        offset += size
    return {name: value.astype(np.float32) for name, value in out.items()}


def layer_encoder(model_bin: Path, layers: tuple[int, ...], xla: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """A function from Whisper log-mels (batch, frames, 80) to the states of `layers`, side by side.

    Args:
        layers: which hidden states, 0 (the convolutions plus positions) to 6 (the last block, normed).
        xla: compile the graph with XLA (batch-invariant and faster; see the module docstring).
    """
    import tensorflow as tf

    w = {name: tf.constant(value) for name, value in read_variables(model_bin).items()}
    deepest = max(layers)

    def norm(x, name):
        mean, var = tf.nn.moments(x, -1, keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + 1e-5) * w[f"{name}/gamma"] + w[f"{name}/beta"]

    def dense(x, name):
        return tf.matmul(x, w[f"{name}/weight"], transpose_b=True) + w[f"{name}/bias"]

    def conv(x, name, stride):  # CTranslate2 stores (out, in, width); padding 1 on each side as in Whisper
        kernel = tf.transpose(w[f"{name}/weight"], (2, 1, 0))
        return tf.nn.conv1d(tf.pad(x, [[0, 0], [1, 1], [0, 0]]), kernel, stride, "VALID") + w[f"{name}/bias"]

    def gelu(x):
        return tf.nn.gelu(x, approximate=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 80], tf.float32)], jit_compile=xla)
    def encode(mel):
        x = gelu(conv(gelu(conv(mel, "conv1", 1)), "conv2", 2))
        batch, frames, width = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        x = x + w["position_encodings/encodings"][:frames]
        states = [x]

        def split(t):  # (batch, frames, width) -> (batch, heads, frames, width / heads)
            return tf.transpose(tf.reshape(t, [batch, frames, HEADS, width // HEADS]), (0, 2, 1, 3))

        for i in range(min(deepest, LAYERS)):
            block = f"layer_{i}"
            qkv = dense(norm(x, f"{block}/self_attention/layer_norm"), f"{block}/self_attention/linear_0")
            q, k, v = tf.split(qkv, 3, -1)
            attention = tf.nn.softmax(tf.matmul(split(q), split(k), transpose_b=True) / np.sqrt(width // HEADS))
            mixed = tf.reshape(tf.transpose(tf.matmul(attention, split(v)), (0, 2, 1, 3)), [batch, frames, width])
            x = x + dense(mixed, f"{block}/self_attention/linear_1")
            hidden = gelu(dense(norm(x, f"{block}/ffn/layer_norm"), f"{block}/ffn/linear_0"))
            x = x + dense(hidden, f"{block}/ffn/linear_1")
            states.append(x)
        if deepest == LAYERS:
            states[-1] = norm(x, "layer_norm")
        return tf.concat([states[i] for i in layers], -1)

    return lambda mel: encode(tf.constant(mel, tf.float32)).numpy()
