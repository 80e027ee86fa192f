"""Loss gradients with respect to intermediate activations, on every backend.

Gradient criteria (`taylor`) need ∂L/∂a for the outputs `a` of some layers.
Keras has no backend-neutral `grad`, and a functional model's intermediate
tensors cannot be differentiated against directly on JAX, so the model is rebuilt
with a *probe* after each scored layer: a layer that adds a zero tensor to its
input. The gradient of the loss with respect to that zero tensor is the gradient
with respect to the activation, and computing it is the only line that differs
per backend (`tf.GradientTape`, `jax.value_and_grad`, `torch.autograd.grad`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

__all__ = ["GradientExtractor"]


def _per_example_total(loss_fn: Callable, y: Any, y_pred: Any, batch: int):
    """Sum over the batch of per-example losses (each averaged over its own axes)."""
    values = keras.ops.convert_to_tensor(loss_fn(y, y_pred))
    rank = len(values.shape)
    if rank == 0:
        # An already-reduced loss is taken to be a mean over the batch (Keras'
        # default "sum_over_batch_size"): scale back to a sum of per-example losses.
        return values * batch
    if rank > 1:
        values = keras.ops.mean(values, axis=tuple(range(1, rank)))
    return keras.ops.sum(values)


class _Probe(keras.layers.Layer):
    """Identity, plus `value` while a gradient is being taken."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.value = None

    def call(self, x):
        return x if self.value is None else x + self.value

    def compute_output_shape(self, input_shape):
        return input_shape


class GradientExtractor:
    """Activations of the named layers of `model` and the gradient of a summed
    loss with respect to them, one batch at a time.

    `model` must be a functional model the caller owns (a flat copy): its layers
    are called again to insert the probes, which adds nodes to them.
    """

    def __init__(self, model: keras.Model, names: Sequence[str], loss: Callable):
        self.names, self.loss = list(names), loss
        probes = {name: _Probe(name=f"{name}__probe") for name in self.names}
        probed = {}

        def call_function(layer, *args, **kwargs):
            output = layer(*args, **kwargs)
            if layer.name in probes:
                output = probes[layer.name](output)
                probed[layer.name] = output
            return output

        clone = keras.models.clone_model(
            model, clone_function=lambda layer: layer, call_function=call_function
        )
        self.probes = [probes[name] for name in self.names]
        outputs = [probed[name] for name in self.names] + list(
            keras.tree.flatten(clone.outputs)
        )
        self.model = keras.Model(clone.input, outputs, name=f"{model.name}_probed")
        self.dtypes = [probed[name].dtype for name in self.names]
        self.shapes = [tuple(probed[name].shape[1:]) for name in self.names]

    def _forward(self, x: Any, y: Any, values: list) -> tuple[Any, list]:
        for probe, value in zip(self.probes, values, strict=True):
            probe.value = value
        try:
            outputs = keras.tree.flatten(self.model(x, training=False))
        finally:
            for probe in self.probes:
                probe.value = None
        n = len(self.names)
        predictions = outputs[n:]
        if len(predictions) == 1:
            predictions = predictions[0]
        batch = int(keras.tree.flatten(x)[0].shape[0])
        return _per_example_total(self.loss, y, predictions, batch), outputs[:n]

    def __call__(self, x: Any, y: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Returns the activations and ∂(Σ per-example loss)/∂activations."""
        batch = int(keras.tree.flatten(x)[0].shape[0])
        shapes = [(batch, *shape) for shape in self.shapes]
        if any(None in shape for shape in shapes):  # spatial sizes vary: look
            outputs = keras.tree.flatten(self.model(x, training=False))
            shapes = [tuple(a.shape) for a in outputs[: len(self.names)]]
        zeros = [
            keras.ops.zeros(s, dtype=d)
            for s, d in zip(shapes, self.dtypes, strict=True)
        ]
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                tape.watch(zeros)
                total, activations = self._forward(x, y, zeros)
            gradients = tape.gradient(
                total, zeros, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
        elif backend == "jax":
            import jax

            (_, activations), gradients = jax.value_and_grad(
                lambda z: self._forward(x, y, z), has_aux=True
            )(zeros)
        elif backend == "torch":
            import torch

            zeros = [z.requires_grad_() for z in zeros]
            total, activations = self._forward(x, y, zeros)
            gradients = torch.autograd.grad(total, zeros, allow_unused=True)
            gradients = [
                torch.zeros_like(z) if g is None else g
                for z, g in zip(zeros, gradients, strict=True)
            ]
            activations = [a.detach() for a in activations]
        else:
            raise RuntimeError(
                "Gradient criteria support the TensorFlow, JAX and PyTorch backends. "
                f"Current backend: {backend!r}"
            )
        return (
            [keras.ops.convert_to_numpy(a) for a in activations],
            [keras.ops.convert_to_numpy(g) for g in gradients],
        )
