"""A small ONNX graph builder: the exporters (`ser.training.onnx_export`, a feature kind's `onnx_front`) write
the inference graph with it, op by op, from verified weights.

Built on `onnx.helper` rather than a converter (tf2onnx, Keras's `export(format="onnx")`): the graph is a
few dozen standard ops, every layer maps to them one to one (a layer without a mapping is refused by name),
and no converter follows TensorFlow 2.21 / Keras 3 with protobuf 7. Opset 17 (LayerNormalization; ReduceMean
takes its axes as an attribute there). Values are float32 and (batch, frames, channels) unless said.

    g = Graph()
    y = g.op("MatMul", "x", g.const(weight))
    model = g.model([("x", ["batch", 350, 80])], ["y"])
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 17


class Graph:
    """Nodes and constants of one ONNX graph, named uniquely as they are added."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self.count = 0
        self.scope = ""  # a prefix of the names added from now on (e.g. "encoder/"): a profile groups time by it

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.scope}{hint}_{self.count}"

    def const(self, value, hint: str = "const") -> str:
        """A constant (float arrays stored as float32, integer ones as int64)."""
        from onnx import numpy_helper

        array = np.asarray(value)
        array = array.astype(np.int64 if np.issubdtype(array.dtype, np.integer) else np.float32)
        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(array, name))
        return name

    def ops(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs) -> list[str]:
        """Add one node; its output names."""
        from onnx import helper

        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=names[0], **attrs))
        return names

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        return self.ops(op_type, list(inputs), 1, **attrs)[0]

    def output(self, value: str, name: str) -> str:
        """`value` under the graph output name `name`."""
        from onnx import helper

        self.nodes.append(helper.make_node("Identity", [value], [name]))
        return name

    # the layers the exporters share
    def dense(self, x: str, kernel: np.ndarray, bias: np.ndarray | None) -> str:
        y = self.op("MatMul", x, self.const(kernel, "kernel"))
        return y if bias is None else self.op("Add", y, self.const(bias, "bias"))

    def affine(self, x: str, scale, shift) -> str:
        return self.op("Add", self.op("Mul", x, self.const(scale, "scale")), self.const(shift, "shift"))

    def time_stats(self, x: str) -> str:
        """(batch, frames, channels) -> (batch, 2 * channels): each channel's mean, then its (population) std."""
        mean = self.op("ReduceMean", x, axes=[1], keepdims=0)
        centred = self.op("Sub", x, self.op("ReduceMean", x, axes=[1], keepdims=1))
        std = self.op("Sqrt", self.op("ReduceMean", self.op("Mul", centred, centred), axes=[1], keepdims=0))
        return self.op("Concat", mean, std, axis=-1)

    def frame_norm(self, x: str, epsilon: float) -> str:
        """Each frame centred and scaled over its channels (`ser.features.frame_normalise`)."""
        centred = self.op("Sub", x, self.op("ReduceMean", x, axes=[-1], keepdims=1))
        std = self.op("Sqrt", self.op("ReduceMean", self.op("Mul", centred, centred), axes=[-1], keepdims=1))
        return self.op("Div", centred, self.op("Add", std, self.const(np.float32(epsilon), "epsilon")))

    def gelu(self, x: str) -> str:
        """0.5 x (1 + erf(x / sqrt 2)), Whisper's GELU (onnxruntime fuses the pattern into one kernel)."""
        # in the order onnxruntime's GeluFusion matches (x / sqrt 2, Erf, + 1, x *, * 0.5): one Gelu kernel
        erf = self.op("Erf", self.op("Div", x, self.const(np.float32(np.sqrt(2)))))
        return self.op("Mul", self.op("Mul", x, self.op("Add", erf, self.const(1.0))), self.const(np.float32(0.5)))

    def model(self, inputs: list[tuple[str, list]], outputs: list[str], metadata: dict[str, str] | None = None):
        """The `onnx.ModelProto` (checked): float32 inputs of the given shapes (str: a symbolic dimension), outputs
        (batch, width)."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            "ser",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", f"{n}_width"]) for n in outputs],
            self.constants,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ser")
        model.ir_version = 8  # opset 17's IR: read by onnxruntime 1.14 and later
        helper.set_model_props(model, metadata or {})
        onnx.checker.check_model(model)
        return model
