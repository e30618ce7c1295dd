"""Whisper base's encoder as ONNX ops, from the verified CTranslate2 weights (`whisper_encoder.read_variables`).

The same graph as `ser.features.whisper_encoder.layer_encoder` (two GELU convolutions, sinusoidal positions,
pre-norm attention blocks, stopped at the deepest layer used), written into the exported inference graph by
`WhisperBase.onnx_front`, so serving runs it in onnxruntime beside the classifier, in one call.

    states = encoder_ops(graph, "mel", weights, layers=[3, 4], frames=175)
"""

from __future__ import annotations

import numpy as np

from ser.features.onnx_ops import Graph
from ser.features.whisper_encoder import HEADS, LAYERS

LAYER_NORM_EPSILON = 1e-5  # Whisper's


def _norm(g: Graph, x: str, w: dict[str, np.ndarray], name: str) -> str:
    gamma, beta = g.const(w[f"{name}/gamma"], "gamma"), g.const(w[f"{name}/beta"], "beta")
    return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=LAYER_NORM_EPSILON)


def _dense(g: Graph, x: str, w: dict[str, np.ndarray], name: str) -> str:
    return g.dense(x, w[f"{name}/weight"].T, w[f"{name}/bias"])  # CTranslate2 stores (out, in)


def _conv(g: Graph, x: str, w: dict[str, np.ndarray], name: str, stride: int) -> str:
    """Channels-first conv; CTranslate2's (out, in, width) is ONNX's layout. Padding 1 each side, as Whisper."""
    kernel, bias = g.const(w[f"{name}/weight"], "conv"), g.const(w[f"{name}/bias"], "conv_bias")
    return g.op("Conv", x, kernel, bias, pads=[1, 1], strides=[stride])


def _attention(g: Graph, x: str, w: dict[str, np.ndarray], block: str, width: int) -> str:
    qkv = _dense(g, _norm(g, x, w, f"{block}/self_attention/layer_norm"), w, f"{block}/self_attention/linear_0")
    heads = g.const([0, 0, HEADS, width // HEADS], "heads")
    q, k, v = (g.op("Reshape", t, heads) for t in g.ops("Split", [qkv], 3, axis=-1))
    q = g.op("Transpose", q, perm=[0, 2, 1, 3])  # (batch, heads, frames, width / heads)
    k = g.op("Transpose", k, perm=[0, 2, 3, 1])  # (batch, heads, width / heads, frames)
    v = g.op("Transpose", v, perm=[0, 2, 1, 3])
    scores = g.op("Mul", g.op("MatMul", q, k), g.const(np.float32(1 / np.sqrt(width // HEADS))))
    mixed = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    mixed = g.op("Reshape", g.op("Transpose", mixed, perm=[0, 2, 1, 3]), g.const([0, 0, width], "width"))
    return _dense(g, mixed, w, f"{block}/self_attention/linear_1")


def encoder_ops(g: Graph, mel: str, w: dict[str, np.ndarray], layers: list[int], frames: int) -> str:
    """States of `layers` side by side, (batch, frames, 512 x len(layers)), for Whisper log-mels (batch, T, 80);
    `frames` of them are kept (the window's own, when the window was padded to a longer context)."""
    x = g.op("Transpose", mel, perm=[0, 2, 1])
    x = g.gelu(_conv(g, g.gelu(_conv(g, x, w, "conv1", 1)), w, "conv2", 2))
    x = g.op("Transpose", x, perm=[0, 2, 1])  # (batch, T / 2, width)
    positions = w["position_encodings/encodings"]
    width = positions.shape[-1]
    length = g.op("Gather", g.op("Shape", x), g.const([1]))  # the positions cut to the input's length at run time
    states = [g.op("Add", x, g.op("Slice", g.const(positions), g.const([0]), length, g.const([0])))]
    for i in range(min(max(layers), LAYERS)):
        block = f"layer_{i}"
        x = states[-1]
        x = g.op("Add", x, _attention(g, x, w, block, width))
        hidden = g.gelu(_dense(g, _norm(g, x, w, f"{block}/ffn/layer_norm"), w, f"{block}/ffn/linear_0"))
        states.append(g.op("Add", x, _dense(g, hidden, w, f"{block}/ffn/linear_1")))
    if max(layers) == LAYERS:
        states[-1] = _norm(g, states[-1], w, "layer_norm")
    joined = g.op("Concat", *[states[i] for i in layers], axis=-1) if len(layers) > 1 else states[layers[0]]
    return g.op("Slice", joined, g.const([0]), g.const([frames]), g.const([1]))
