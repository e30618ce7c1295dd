"""A saved Keras model as a plain NumPy program: exported once with Keras, run without TensorFlow.

`ser predict` on one clip spent ~10 s importing TensorFlow and ~8 s loading and tracing the model for
~50 ms of arithmetic. `export_graph` walks a loaded model's functional graph (nested models too: the
stats head, seed ensembles) and writes each layer as an op name, its settings and its weights;
`run_graph` evaluates that program with NumPy in float32. Only the layers `ser.training.model` builds
are known (normalisation, Conv1D, BatchNorm, ELU, max pooling, (Bi)LSTM, attention / mean pooling,
Dense, TimeStats, Average); any other layer or setting raises `UnsupportedModel`, and the caller keeps
the TensorFlow path. tests/unit/serving/test_numpy_graph.py holds the outputs equal to Keras's.

    plan, arrays = export_graph(keras_model)       # needs Keras (once)
    probs = run_graph(plan, arrays, features)      # NumPy only
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # keras.backend.epsilon(): Normalization's floor on the standard deviation
ACTIVATIONS = ("linear", "elu", "relu", "softmax", "sigmoid", "tanh")


class UnsupportedModel(ValueError):
    """The model holds a layer or a setting this NumPy runtime does not implement (named in the message)."""


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


def _np(value) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(value), np.float32)


def export_graph(model, prefix: str = "") -> tuple[dict, dict[str, np.ndarray]]:
    """The model's graph as (plan, arrays): JSON-able ops in evaluation order and their weights by key.

    Raises:
        UnsupportedModel: a layer or setting without a NumPy implementation.
    """
    cfg = model.get_config()
    nodes, arrays = [], {}
    for entry in cfg["layers"]:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            continue
        if len(entry["inbound_nodes"]) != 1:
            raise UnsupportedModel(f"layer {name}: called {len(entry['inbound_nodes'])} times; expected once")
        layer = model.get_layer(name)
        node = {"name": name, "inputs": _history(entry["inbound_nodes"][0]["args"])}
        if entry["class_name"] in ("Functional", "Model", "Sequential"):
            node["op"], (node["graph"], inner) = "model", export_graph(layer, f"{prefix}{name}/")
            arrays.update(inner)
        else:
            node["op"], attrs, weights = _describe(layer)
            node["attrs"] = attrs
            node["weights"] = []
            for i, w in enumerate(weights):
                key = f"{prefix}{name}/{i}"
                arrays[key] = w
                node["weights"].append(key)
        nodes.append(node)
    return {"inputs": _names(cfg["input_layers"]), "outputs": _names(cfg["output_layers"]), "nodes": nodes}, arrays


def _activation(layer) -> str:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name not in ACTIVATIONS:
        raise UnsupportedModel(f"layer {layer.name}: activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


def _lstm(layer) -> tuple[dict, list[np.ndarray]]:
    cell = layer.cell
    acts = (getattr(cell.activation, "__name__", ""), getattr(cell.recurrent_activation, "__name__", ""))
    if acts != ("tanh", "sigmoid") or not cell.use_bias or layer.return_state:
        raise UnsupportedModel(f"layer {layer.name}: an LSTM other than tanh/sigmoid with bias, no returned state")
    attrs = {"units": cell.units, "sequences": bool(layer.return_sequences), "backwards": bool(layer.go_backwards)}
    return attrs, [_np(cell.kernel), _np(cell.recurrent_kernel), _np(cell.bias)]


def _describe(layer) -> tuple[str, dict, list[np.ndarray]]:
    """(op, attrs, weights) of one non-model layer."""
    from keras import layers

    from ser.training.model import AttentionPool, SpecAugment, TimeStats, UtteranceNorm

    if isinstance(layer, SpecAugment | layers.Dropout):
        return "identity", {}, []  # active only in training
    if isinstance(layer, UtteranceNorm):
        return "utterance_norm", {}, []
    if isinstance(layer, TimeStats):
        return "time_stats", {}, []
    if isinstance(layer, layers.Average):
        return "average", {}, []
    if isinstance(layer, layers.GlobalAveragePooling1D) and not layer.keepdims:
        return "mean_pool", {}, []
    if isinstance(layer, AttentionPool):
        return "attention_pool", {}, [_np(layer.score.kernel), _np(layer.score.bias)]
    if isinstance(layer, layers.Normalization) and not layer.invert:
        return "normalize", {}, [_np(layer.mean), _np(layer.variance)]
    if isinstance(layer, layers.ELU):
        return "elu", {"alpha": float(layer.alpha)}, []
    if isinstance(layer, layers.Dense):
        bias = _np(layer.bias) if layer.use_bias else np.zeros(layer.units, np.float32)
        return "dense", {"activation": _activation(layer)}, [_np(layer.kernel), bias]
    if isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, len(layer.input.shape) - 1):
        scale = _np(layer.gamma) if layer.scale else 1.0
        shift = _np(layer.beta) if layer.center else 0.0
        inv = scale / np.sqrt(_np(layer.moving_variance) + layer.epsilon)
        return "affine", {}, [np.asarray(inv, np.float32), np.asarray(shift - _np(layer.moving_mean) * inv, np.float32)]
    if isinstance(layer, layers.Conv1D) and not isinstance(layer, layers.Conv1DTranspose):
        plain = layer.strides == (1,) and layer.dilation_rate == (1,) and layer.groups == 1
        if not plain or layer.padding not in ("same", "valid") or layer.data_format != "channels_last":
            raise UnsupportedModel(f"layer {layer.name}: Conv1D other than stride 1, same/valid, channels_last")
        bias = _np(layer.bias) if layer.use_bias else np.zeros(layer.filters, np.float32)
        return "conv1d", {"padding": layer.padding, "activation": _activation(layer)}, [_np(layer.kernel), bias]
    if isinstance(layer, layers.MaxPooling1D) and layer.data_format == "channels_last":
        attrs = {"size": int(layer.pool_size[0]), "stride": int(layer.strides[0]), "padding": layer.padding}
        return "max_pool", attrs, []
    if isinstance(layer, layers.Bidirectional) and layer.merge_mode == "concat":
        if not isinstance(layer.forward_layer, layers.LSTM) or not isinstance(layer.backward_layer, layers.LSTM):
            raise UnsupportedModel(f"layer {layer.name}: Bidirectional over a layer other than LSTM")
        (fa, fw), (ba, bw) = _lstm(layer.forward_layer), _lstm(layer.backward_layer)
        return "bilstm", {"forward": fa, "backward": ba}, [*fw, *bw]
    if isinstance(layer, layers.LSTM):
        attrs, weights = _lstm(layer)
        return "lstm", attrs, weights
    raise UnsupportedModel(f"layer {layer.name}: {type(layer).__name__} has no NumPy implementation here")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function, without exp's overflow


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _act(x: np.ndarray, name: str) -> np.ndarray:
    if name == "elu":
        return _elu(x)
    if name == "relu":
        return np.maximum(x, 0)
    if name == "softmax":
        return _softmax(x)
    if name == "sigmoid":
        return _sigmoid(x)
    return np.tanh(x) if name == "tanh" else x


def _conv1d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, padding: str) -> np.ndarray:
    width = kernel.shape[0]
    if padding == "same":  # Keras/TF: the extra padding of an even kernel goes to the end
        x = np.pad(x, ((0, 0), ((width - 1) // 2, width // 2), (0, 0)))
    frames = x.shape[1] - width + 1
    cols = np.concatenate([x[:, j : j + frames] for j in range(width)], axis=-1)  # (batch, frames, width * in)
    return cols @ kernel.reshape(-1, kernel.shape[-1]) + bias


def _max_pool(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    frames = x.shape[1]
    if padding == "same":
        out = -(-frames // stride)
        extra = max((out - 1) * stride + size - frames, 0)
        x = np.pad(x, ((0, 0), (extra // 2, extra - extra // 2), (0, 0)), constant_values=-np.inf)
    else:
        out = (frames - size) // stride + 1
    return np.max([x[:, j : j + (out - 1) * stride + 1 : stride] for j in range(size)], axis=0)


def _lstm_run(x: np.ndarray, weights: list[np.ndarray], attrs: dict) -> np.ndarray:
    kernel, recurrent, bias = weights
    units = attrs["units"]
    steps = x[:, ::-1] if attrs["backwards"] else x
    inputs = steps @ kernel + bias  # every step's input projection at once
    h = np.zeros((len(x), units), np.float32)
    c = np.zeros_like(h)
    outputs = []
    for t in range(inputs.shape[1]):
        z = inputs[:, t] + h @ recurrent  # gates in Keras's order: input, forget, cell, output
        i, f = _sigmoid(z[:, :units]), _sigmoid(z[:, units : 2 * units])
        c = f * c + i * np.tanh(z[:, 2 * units : 3 * units])
        h = _sigmoid(z[:, 3 * units :]) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1) if attrs["sequences"] else h


def _apply(node: dict, xs: list[np.ndarray], w: list[np.ndarray]) -> np.ndarray:
    op, attrs, x = node["op"], node.get("attrs", {}), xs[0]
    if op == "identity":
        return x
    if op == "normalize":
        return (x - w[0]) / np.maximum(np.sqrt(w[1]), EPSILON)
    if op == "utterance_norm":
        return x - x.mean(axis=1, keepdims=True)
    if op == "affine":
        return x * w[0] + w[1]
    if op == "elu":
        return _elu(x, attrs["alpha"])
    if op == "dense":
        return _act(x @ w[0] + w[1], attrs["activation"])
    if op == "conv1d":
        return _act(_conv1d(x, w[0], w[1], attrs["padding"]), attrs["activation"])
    if op == "max_pool":
        return _max_pool(x, attrs["size"], attrs["stride"], attrs["padding"])
    if op == "lstm":
        return _lstm_run(x, w, attrs)
    if op == "bilstm":
        forward, backward = _lstm_run(x, w[:3], attrs["forward"]), _lstm_run(x, w[3:], attrs["backward"])
        return np.concatenate([forward, backward[:, ::-1] if attrs["backward"]["sequences"] else backward], -1)
    if op == "mean_pool":
        return x.mean(axis=1)
    if op == "attention_pool":
        weights = _softmax(x @ w[0] + w[1], axis=1)
        return (weights * x).sum(axis=1)
    if op == "time_stats":
        return np.concatenate([x.mean(axis=1), x.std(axis=1)], -1)
    if op == "average":
        return np.mean(xs, axis=0)
    raise UnsupportedModel(f"layer {node['name']}: unknown op {op!r} in the exported graph")


def run_graph(plan: dict, arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Evaluate an exported graph (one input) on a float32 batch; returns its (one) output."""
    values = {plan["inputs"][0]: np.asarray(x, np.float32)}
    for node in plan["nodes"]:
        xs = [values[name] for name in node["inputs"]]
        if node["op"] == "model":
            values[node["name"]] = run_graph(node["graph"], arrays, xs[0])
        else:
            values[node["name"]] = _apply(node, xs, [arrays[k] for k in node.get("weights", [])])
    return values[plan["outputs"][0]]
