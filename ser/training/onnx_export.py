"""The saved Keras model, with its feature kind's front end, as one ONNX graph: what serving runs.

`inference_graph` writes, from the front end's output (`ser.features.frontend`: log-mel in NumPy) onwards,
the kind's arithmetic (`FeatureKind.onnx_front`: the Whisper encoder's blocks up to the deepest layer used),
the frame normalisation, and the model's functional graph layer by layer (nested models too: every ensemble
member, the statistics head, averaged). Its outputs are the class probabilities and each window's clip
statistics (per channel mean and std of the model input), which a calibration profile re-standardises and
the enrolment head reads, so neither needs a re-export. Only the layers `ser.training.model` builds are
known; any other layer or setting raises `UnsupportedLayer` naming it.

    onnx_model = inference_graph(keras_model, params.features)
"""

from __future__ import annotations

import numpy as np

from ser.config import FeatureParams
from ser.features import feature_kind
from ser.features.onnx_ops import Graph

INPUT, PROBABILITIES, STATS = "frontend", "probabilities", "stats"
FRAME_NORM_EPSILON = 1e-5  # ser.features.frame_normalise's
EPSILON = 1e-7  # keras.backend.epsilon(): Normalization's floor on the standard deviation
ACTIVATIONS = {"elu": "Elu", "relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh"}


class UnsupportedLayer(ValueError):
    """The model holds a layer or setting without an ONNX mapping here (named in the message)."""


def _np(value) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value), np.float32)


def _history(args) -> list[str]:
    """Names of the layers whose outputs feed a node (Keras 3 config `inbound_nodes[0].args`)."""
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        return [args["config"]["keras_history"][0]]
    if isinstance(args, list | tuple):
        return [name for a in args for name in _history(a)]
    return []


def _names(spec) -> list[str]:
    """`input_layers` / `output_layers` of a functional config: [name, 0, 0] or a list of those."""
    return [spec[0]] if spec and isinstance(spec[0], str) else [s[0] for s in spec]


def model_ops(g: Graph, model, x: str) -> str:
    """Add a functional Keras model (one input, one output) applied to `x`; its output's name."""
    cfg = model.get_config()
    values = {_names(cfg["input_layers"])[0]: x}
    for entry in cfg["layers"]:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            continue
        if len(entry["inbound_nodes"]) != 1:
            raise UnsupportedLayer(f"layer {name}: called {len(entry['inbound_nodes'])} times; expected once")
        inputs = [values[n] for n in _history(entry["inbound_nodes"][0]["args"])]
        layer = model.get_layer(name)
        if entry["class_name"] in ("Functional", "Model", "Sequential"):
            values[name] = model_ops(g, layer, inputs[0])
        else:
            values[name] = layer_ops(g, layer, inputs)
    return values[_names(cfg["output_layers"])[0]]


def _activation(g: Graph, layer, x: str) -> str:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name == "linear":
        return x
    if name not in ACTIVATIONS:
        raise UnsupportedLayer(f"layer {layer.name}: activation {name!r}; expected linear or {', '.join(ACTIVATIONS)}")
    return g.op(ACTIVATIONS[name], x, **({"axis": -1} if name == "softmax" else {}))


def _lstm_weights(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, R, B) of one Keras LSTM in ONNX's layout: gates reordered from Keras's i, f, c, o to ONNX's i, o, f, c."""
    cell = layer.cell
    acts = (getattr(cell.activation, "__name__", ""), getattr(cell.recurrent_activation, "__name__", ""))
    if acts != ("tanh", "sigmoid") or not cell.use_bias or layer.return_state:
        raise UnsupportedLayer(f"layer {layer.name}: an LSTM other than tanh/sigmoid with bias, no returned state")
    u = cell.units
    order = np.r_[0:u, 3 * u : 4 * u, u : 2 * u, 2 * u : 3 * u]
    kernel, recurrent, bias = _np(cell.kernel)[:, order], _np(cell.recurrent_kernel)[:, order], _np(cell.bias)[order]
    return kernel.T, recurrent.T, np.concatenate([bias, np.zeros_like(bias)])


def _lstm(g: Graph, x: str, parts: list, units: int, sequences: bool, direction: str) -> str:
    w, r, b = (np.stack(arrays) for arrays in zip(*parts, strict=True))
    steps = g.op("Transpose", x, perm=[1, 0, 2])  # ONNX's LSTM reads (frames, batch, channels)
    y, y_h = g.ops("LSTM", [steps, g.const(w), g.const(r), g.const(b)], 2, hidden_size=units, direction=direction)
    if sequences:  # (frames, directions, batch, units) -> (batch, frames, directions x units)
        return g.op("Reshape", g.op("Transpose", y, perm=[2, 0, 1, 3]), g.const([0, 0, -1]))
    return g.op("Reshape", g.op("Transpose", y_h, perm=[1, 0, 2]), g.const([0, -1]))


def _channels_first(g: Graph, x: str, op: str, **attrs) -> str:
    """An ONNX op that reads (batch, channels, frames) applied to a (batch, frames, channels) value."""
    inputs = attrs.pop("inputs", [])
    y = g.op(op, g.op("Transpose", x, perm=[0, 2, 1]), *inputs, **attrs)
    return g.op("Transpose", y, perm=[0, 2, 1])


def _same_pads(size: int, stride: int, frames: int | None) -> list[int]:
    """TensorFlow's `same` padding (the odd one at the end) of a window `size` moving by `stride` over `frames`."""
    if frames is None:
        raise UnsupportedLayer("a `same` pooling over an unknown number of frames")
    out = -(-frames // stride)
    extra = max((out - 1) * stride + size - frames, 0)
    return [extra // 2, extra - extra // 2]


def layer_ops(g: Graph, layer, xs: list[str]) -> str:  # noqa: C901 - one branch per layer type
    """Add one (non-model) layer applied to its inputs; its output's name."""
    from keras import layers

    from ser.training.model import AttentionPool, LayerMix, SpecAugment, TimeStats, UtteranceNorm

    x = xs[0]
    if isinstance(layer, SpecAugment | layers.Dropout):
        return x  # active only in training
    if isinstance(layer, UtteranceNorm):
        return g.op("Sub", x, g.op("ReduceMean", x, axes=[1], keepdims=1))
    if isinstance(layer, TimeStats):
        return g.time_stats(x)
    if isinstance(layer, layers.Average):
        return g.op("Mean", *xs)
    if isinstance(layer, layers.GlobalAveragePooling1D) and not layer.keepdims:
        return g.op("ReduceMean", x, axes=[1], keepdims=0)
    if isinstance(layer, AttentionPool):
        scores = g.op("Softmax", g.dense(x, _np(layer.score.kernel), _np(layer.score.bias)), axis=1)
        return g.op("ReduceSum", g.op("Mul", scores, x), g.const([1]), keepdims=0)
    if isinstance(layer, LayerMix):
        weights = np.exp(_np(layer.logits) - _np(layer.logits).max())
        parts = g.op("Reshape", x, g.const([0, 0, layer.groups, -1]))
        mixed = g.op("Mul", parts, g.const((weights / weights.sum())[:, None]))
        return g.op("ReduceSum", mixed, g.const([2]), keepdims=0)
    if isinstance(layer, layers.Normalization) and not layer.invert:
        scale = 1.0 / np.maximum(np.sqrt(_np(layer.variance)), EPSILON)
        return g.affine(x, scale.reshape(-1), (-_np(layer.mean) * scale).reshape(-1))
    if isinstance(layer, layers.ELU):
        return g.op("Elu", x, alpha=float(layer.alpha))
    if isinstance(layer, layers.Dense):
        return _activation(g, layer, g.dense(x, _np(layer.kernel), _np(layer.bias) if layer.use_bias else None))
    if isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, len(layer.input.shape) - 1):
        scale = _np(layer.gamma) if layer.scale else 1.0
        shift = _np(layer.beta) if layer.center else 0.0
        inv = scale / np.sqrt(_np(layer.moving_variance) + layer.epsilon)
        return g.affine(x, inv, shift - _np(layer.moving_mean) * inv)
    if isinstance(layer, layers.Conv1D) and not isinstance(layer, layers.Conv1DTranspose):
        plain = layer.strides == (1,) and layer.dilation_rate == (1,) and layer.groups == 1
        if not plain or layer.padding not in ("same", "valid") or layer.data_format != "channels_last":
            raise UnsupportedLayer(f"layer {layer.name}: Conv1D other than stride 1, same/valid, channels_last")
        width = layer.kernel_size[0]
        pads = [(width - 1) // 2, width // 2] if layer.padding == "same" else [0, 0]
        inputs = [g.const(_np(layer.kernel).transpose(2, 1, 0))] + (
            [g.const(_np(layer.bias))] if layer.use_bias else []
        )
        return _activation(g, layer, _channels_first(g, x, "Conv", inputs=inputs, pads=pads))
    if isinstance(layer, layers.MaxPooling1D) and layer.data_format == "channels_last":
        size, stride = int(layer.pool_size[0]), int(layer.strides[0])
        pads = _same_pads(size, stride, layer.input.shape[1]) if layer.padding == "same" else [0, 0]
        return _channels_first(g, x, "MaxPool", kernel_shape=[size], strides=[stride], pads=pads)
    if isinstance(layer, layers.Bidirectional) and layer.merge_mode == "concat":
        forward, backward = layer.forward_layer, layer.backward_layer
        if not isinstance(forward, layers.LSTM) or not isinstance(backward, layers.LSTM) or forward.go_backwards:
            raise UnsupportedLayer(f"layer {layer.name}: Bidirectional over a layer other than a forward LSTM")
        both = [_lstm_weights(forward), _lstm_weights(backward)]
        return _lstm(g, x, both, forward.cell.units, bool(forward.return_sequences), "bidirectional")
    if isinstance(layer, layers.LSTM) and not layer.go_backwards:
        return _lstm(g, x, [_lstm_weights(layer)], layer.cell.units, bool(layer.return_sequences), "forward")
    raise UnsupportedLayer(f"layer {layer.name}: {type(layer).__name__} has no ONNX mapping here")


def inference_graph(model, params: FeatureParams, metadata: dict[str, str] | None = None):
    """The ONNX model from the front end's output (`INPUT`, (batch, frames, mels)) to `PROBABILITIES` and `STATS`.

    Raises:
        UnsupportedLayer: a layer or setting without an ONNX mapping.
    """
    kind = feature_kind(params.kind)
    frames, mels = kind.frontend(params).shape
    g = Graph()
    g.scope = "front/"  # the kind's arithmetic: for whisper_base, the encoder
    feats = kind.onnx_front(g, INPUT, params)
    if params.frame_norm:
        feats = g.frame_norm(feats, FRAME_NORM_EPSILON)
    g.scope = "model/"
    g.output(model_ops(g, model, feats), PROBABILITIES)
    g.scope = "stats/"
    g.output(g.time_stats(feats), STATS)
    return g.model([(INPUT, ["batch", frames, mels])], [PROBABILITIES, STATS], metadata)
