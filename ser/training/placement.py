"""Where training runs: every visible GPU of the active Keras backend, else the CPU.

`ser.training.train.fit` asks `device_placement()` once per run and builds its models in `scope()`: on TensorFlow
all GPUs through a MirroredStrategy in mixed float16, on JAX data parallel over several GPUs in float32,
on a machine without GPU plainly on the CPU. The benchmark reads `visible_gpus()` for its cost table.

    placement = device_placement()
    with placement.scope():
        model = build_model(...)
"""

from __future__ import annotations

import contextlib
import logging

import keras

log = logging.getLogger(__name__)


def visible_gpus() -> int:
    """GPUs the active Keras backend can train on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return len(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return sum(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.device_count()
    return 0


class Placement:
    """Where training runs: `scope()` to build the model in, `replicas` that split each batch."""

    def __init__(self, strategy=None, replicas: int = 1) -> None:
        self.strategy, self.replicas = strategy, replicas

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()


def device_placement() -> Placement:
    """All GPUs (TensorFlow: MirroredStrategy, mixed float16; JAX: data parallel, float32), else the CPU.

    JAX's cuDNN LSTM takes no float16, so other backends train in float32 (TF32 matmuls on recent GPUs).

    Create it once per training run: each MirroredStrategy claims the GPUs anew.
    """
    gpus = visible_gpus()
    if not gpus:
        log.info("no GPU visible (Keras backend %s): training on the CPU", keras.backend.backend())
        return Placement()
    log.info("training on %d GPU(s) (Keras backend %s)", gpus, keras.backend.backend())
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        keras.mixed_precision.set_global_policy("mixed_float16")
        strategy = tf.distribute.MirroredStrategy()
        return Placement(strategy, strategy.num_replicas_in_sync)
    if keras.backend.backend() == "jax" and gpus > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return Placement(replicas=gpus)
    return Placement()
