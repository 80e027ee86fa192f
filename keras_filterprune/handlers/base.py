"""The handler base class and the handlers every other one builds on.

A handler owns every fact keras-filterprune needs about one layer class: how its
channels flow (`propagate`), which weight axes follow them (`weight_axes`, and from
them `map_weights`, used by surgery and masking alike), its config at a new width
(`prune_config`), its kernel for the criteria (`kernel`, `kernel_input_repeat`,
`kernel_input_keep`), its MACs (`macs`), the kind of kernel latency tables measure
(`latency_kind`), which weights are running statistics (`statistics_weights`) and
whether it can be rebuilt from its config (`rebuild_error`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from keras_filterprune.walk import Call

__all__ = [
    "AxisRule",
    "LayerHandler",
    "FreezeHandler",
    "PassThroughHandler",
    "UnknownShapeError",
    "channels_last",
    "dims",
    "split_shape",
]

# A weight axis rule: (axis, source, repeat). `source` is "in" (the layer's first
# input channels, each repeated `repeat` times) or "out" (the layer's own filters).
AxisRule = tuple[int, str, int]
Shape = tuple


class UnknownShapeError(Exception):
    """Raised by `LayerHandler.macs` when it needs a shape that is not known.

    `error.shape` is the shape with the unknown (`None`) dims; `profile_model`
    and `count_macs` turn it into a `ValueError` that names the layer.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import UnknownShapeError, get_handler
    >>> dense = keras.layers.Dense(4)
    >>> try:  # a sequence of unknown length: the MACs depend on it
    ...     get_handler(dense).macs(dense, [(None, None, 8)], [(None, None, 4)])
    ... except UnknownShapeError as error:
    ...     print("unknown dims in", error.shape)
    unknown dims in (None, None, 8)
    """

    def __init__(self, shape: Shape | None) -> None:
        super().__init__(shape)
        self.shape = shape


def dims(shape: Shape | None) -> tuple[int, ...]:
    """The non-batch dims of `shape`, all known (else `UnknownShapeError`)."""
    if shape is None or any(d is None for d in shape[1:]):
        raise UnknownShapeError(shape)
    return tuple(int(d) for d in shape[1:])


def split_shape(layer, shape: Shape | None) -> tuple[tuple, int]:
    """Splits a shape into (spatial dims, channels) following `layer.data_format`."""
    d = dims(shape)
    if not channels_last(layer):
        return d[1:], d[0]
    return d[:-1], d[-1]


def channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


class LayerHandler:
    """Base class of the channel rules of one layer class.

    Subclass it to teach keras-filterprune a custom layer, then call
    `register_handler(MyLayer, MyHandler())`. Handlers are stateless.

    A handler is the one owner of every per-layer fact; the rest of the library
    asks it and never tests layer classes itself:

    - channel flow: `produces`, `elementwise`, `propagate`;
    - weight layout: `weight_axes` (and `map_weights`, used by surgery and masks),
      `statistics_weights` (running statistics, which masks leave alone and
      `recalibrate_batchnorm` re-estimates);
    - config: `prune_config`, `rebuild_error`;
    - criteria: `kernel`, `kernel_input_repeat`, `kernel_input_keep` (which
      kernel rows kept input channels keep, e.g. a grouped conv's slots);
    - cost: `macs`, and `latency_kind` (the kernel kind that
      `measure_latency_table` measures for the layer).

    Example:

    A per-channel scale (`x * gamma`) keeps its input's channels: its handler
    says so (`propagate`), names the axis of `gamma` that follows them
    (`weight_axes`) and counts one multiply per output element (`macs`). Then
    the channels through it can be pruned, and `gamma` is sliced with them:

    >>> import math, keras
    >>> from keras_filterprune import apply_plan, count_macs, plan_pruning
    >>> from keras_filterprune.handlers import (
    ...     LayerHandler, register_handler, unregister_handler)
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.gamma = self.add_weight(shape=(input_shape[-1],))
    ...     def call(self, x):
    ...         return x * self.gamma
    ...     def compute_output_shape(self, input_shape):
    ...         return input_shape
    >>> class ScaleHandler(LayerHandler):
    ...     def propagate(self, layer, call, inputs, tracer):
    ...         return [inputs[0]]  # output channel c is input channel c
    ...     def weight_axes(self, layer):
    ...         return [[(0, "in", 1)]]  # axis 0 of gamma: the input channels
    ...     def macs(self, layer, inputs, outputs):
    ...         return math.prod(outputs[0][1:])
    >>> register_handler(Scale, ScaleHandler())
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="dense"),
    ...     Scale(name="scale"), keras.layers.Dense(2, name="head")])
    >>> count_macs(model)  # 8 x 4 + 4 + 4 x 2
    44
    >>> pruned = apply_plan(model, plan_pruning(model, ratio=0.5))
    >>> pruned.get_layer("scale").get_weights()[0].shape
    (2,)
    >>> _ = unregister_handler(Scale)
    """

    #: Whether the layer creates new, prunable output channels (a "producer").
    produces = False
    #: Whether each output element depends only on the same input element (BatchNorm
    #: at inference, activations, dropout): active criteria score a producer's
    #: activations at the end of such a chain.
    elementwise = False

    def propagate(self, layer, call: Call, inputs: list, tracer) -> list:
        """Returns the element ids of each output tensor of one call.

        Args:
            layer: The live layer.
            call: The `Call` (its `inputs`/`outputs` tensor keys).
            inputs: One int array of element ids per input tensor (or `None` when
                the channel count is unknown).
            tracer: The graph builder: `tracer.channels(key)`,
                `tracer.producer_ids(path, n)`, `tracer.opaque(n, path, reason)`,
                `tracer.freeze(ids, path, reason)`, `tracer.union(a, b)`,
                `tracer.tie(rows)` (slot `j` of every row is one channel).
        """
        raise NotImplementedError

    def weight_axes(self, layer) -> list[list[AxisRule]]:
        """Per weight of `layer.get_weights()`, the axes that follow channels."""
        return [[] for _ in getattr(layer, "weights", ())]

    def prune_config(self, layer, config: dict, n_out: int) -> dict:
        """Returns the layer config for `n_out` kept output channels."""
        return config

    def kernel(self, layer) -> np.ndarray:
        """Producers: the kernel in `(*spatial, C_in, N)` layout for the criteria."""
        raise NotImplementedError(f"{type(layer).__name__} has no prunable kernel.")

    def kernel_input_repeat(self, layer) -> int:
        """Producers: how many kernel input rows each input channel feeds (the
        depth multiplier of a separable conv; 1 otherwise)."""
        return 1

    def kernel_input_keep(self, layer, in_keep: np.ndarray) -> np.ndarray:
        """Producers: the rows of `kernel(layer)`'s input axis that kept input
        channels keep (the kernel a physically pruned layer would have).

        Args:
            layer: The live layer.
            in_keep: Boolean array, one flag per channel of the layer's first input.

        Returns:
            Boolean array, one flag per row of the kernel's input axis (`-2`):
            each input flag repeated `kernel_input_repeat(layer)` times.
        """
        repeat = self.kernel_input_repeat(layer)
        return np.repeat(np.asarray(in_keep, dtype=bool), repeat)

    def latency_kind(self, layer) -> str | None:
        """The kind of kernel whose latency `measure_latency_table` measures for
        the layer as a function of its channels, or `None` (not measured).

        Args:
            layer: The live layer.

        Returns:
            `"conv"` for a producer that is not a grouped convolution (its input
            and output widths are measured), `"depthwise"` for a depthwise
            convolution (its outputs follow its inputs), `None` otherwise.
        """
        if self.produces and getattr(layer, "groups", 1) == 1:
            return "conv"
        return None

    def statistics_weights(self, layer) -> tuple[str, ...]:
        """The layer's running statistics: weights estimated from data in training
        mode (a moving average with the layer's `momentum`), not learned. Masks
        leave them alone (a channel that regrows keeps them) and
        `recalibrate_batchnorm` re-estimates them.

        Args:
            layer: The live layer (built or not).

        Returns:
            The names of the layer's attributes that hold them, e.g.
            `("moving_mean", "moving_variance")`; `()` (the default) when it has
            none.
        """
        return ()

    def macs(self, layer, inputs: Sequence[Shape], outputs: Sequence[Shape]):
        """Multiply-accumulates of one call for one example, or `None` when the
        layer has no MAC rule (it is then counted as 0 and, if it owns weights,
        reported as uncounted). Raise `UnknownShapeError` for a missing shape."""
        return None

    def rebuild_error(self, layer) -> str | None:
        """Why surgery cannot rebuild the layer from its config, or `None`.

        The text completes "Layer '<path>' …", e.g. "is a Lambda layer: …"."""
        return None

    def map_weights(
        self, layer, weights: list, in_keep, out_keep, op: Callable
    ) -> list:
        """Applies `op(weight, axis, mask, index)` along every channel axis.

        `in_keep`/`out_keep` are boolean masks of the layer's first input's and
        its output's channels (or `None`). Surgery slices with it, masking
        multiplies: both follow `weight_axes`, the one statement of the layout.
        """
        out = []
        for i, (w, rules) in enumerate(zip(weights, self.weight_axes(layer))):
            for axis, src, repeat in rules:
                mask = in_keep if src == "in" else out_keep
                if mask is None:
                    continue
                if repeat > 1:
                    mask = np.repeat(mask, repeat)
                if mask.all():
                    continue
                if w.shape[axis] == 1 and len(mask) != 1:
                    continue  # broadcast weight (e.g. PReLU shared on channels)
                if w.shape[axis] != len(mask):
                    raise RuntimeError(
                        f"Internal error: weight {i} of layer '{layer.name}' has "
                        f"{w.shape[axis]} entries on axis {axis}, the channel mask "
                        f"{len(mask)}. Please report this with the model."
                    )
                w = op(w, axis, mask, i)
            out.append(w)
        return out


class FreezeHandler(LayerHandler):
    """A layer whose channel mapping is unknown: every group reaching it is frozen.

    Args:
        reason: `str`. Why, as `plan.summary()` reports it. Defaults to `None`
            ("<class> is not channel-aware").
        rebuild_error: `str`. Set when surgery must refuse to rebuild the layer
            (e.g. Lambda layers, whose config holds Python bytecode). Defaults
            to `None`.

    Example:

    A custom layer that reorders its channels must never have them pruned
    under it; registering a `FreezeHandler` says why in the plan's summary
    (`Permute` and `Lambda` layers have one already):

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> from keras_filterprune.handlers import (
    ...     FreezeHandler, register_handler, unregister_handler)
    >>> class Reverse(keras.layers.Layer):
    ...     def call(self, x):
    ...         return keras.ops.flip(x, axis=-1)
    >>> register_handler(Reverse, FreezeHandler("reverses the channels"))
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="dense"),
    ...     Reverse(name="reverse"), keras.layers.Dense(2, name="head")])
    >>> trace_channels(model).group_of("dense").frozen
    "reverses the channels (at layer 'reverse')"
    >>> _ = unregister_handler(Reverse)
    """

    def __init__(self, reason: str | None = None, rebuild_error: str | None = None):
        self.reason = reason
        self._rebuild_error = rebuild_error

    def propagate(self, layer, call, inputs, tracer):
        reason = self.reason or f"{type(layer).__name__} is not channel-aware"
        for ids in inputs:
            tracer.freeze(ids, call.path, reason)
        return [
            tracer.opaque(tracer.channels(key), call.path, reason)
            for key in call.outputs
        ]

    def rebuild_error(self, layer):
        return self._rebuild_error


class PassThroughHandler(LayerHandler):
    """Channels pass through unchanged; per-channel weights are sliced.

    Every weight whose last axis has the channel count is sliced along it (BatchNorm
    gamma/beta/moving statistics, PReLU alpha, a per-channel scale).

    Args:
        elementwise: `bool`. Whether the layer maps each element on its own (an
            activation), as opposed to pooling or padding. Defaults to `False`.

    Example:

    A custom per-channel scale has one weight per channel: without a handler
    the channels reaching it are frozen; with `PassThroughHandler` they are
    prunable, and its weight follows them:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> from keras_filterprune.handlers import (
    ...     PassThroughHandler, register_handler, unregister_handler)
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.gamma = self.add_weight(shape=(input_shape[-1],))
    ...     def call(self, x):
    ...         return x * self.gamma
    >>> model = keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="dense"),
    ...     Scale(name="scale"), keras.layers.Dense(2, name="head")])
    >>> handler = PassThroughHandler(elementwise=True)
    >>> register_handler(Scale, handler)
    >>> print(trace_channels(model).group_of("dense").frozen)
    None
    >>> handler.weight_axes(model.get_layer("scale"))  # (axis, source, repeat)
    [[(0, 'in', 1)]]
    >>> _ = unregister_handler(Scale)
    """

    def __init__(self, elementwise: bool = False) -> None:
        self.elementwise = elementwise

    def propagate(self, layer, call, inputs, tracer):
        if not channels_last(layer):
            return FreezeHandler("channels_first data format").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0] for _ in call.outputs]

    def weight_axes(self, layer):
        width = next((int(w.shape[-1]) for w in layer.weights if w.shape), None)
        return [
            [(len(w.shape) - 1, "in", 1)] if w.shape and w.shape[-1] == width else []
            for w in layer.weights
        ]


class ElementwiseMacsHandler(PassThroughHandler):
    """A pass-through layer that costs one multiply-add per output element
    (BatchNormalization folded to `x * scale + shift` at inference).

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import ElementwiseMacsHandler
    >>> handler = ElementwiseMacsHandler(elementwise=True)
    >>> layer = keras.layers.BatchNormalization()
    >>> handler.macs(layer, [(None, 4, 4, 8)], [(None, 4, 4, 8)])  # 4 x 4 x 8
    128

    Registered for a custom per-channel affine layer (`x * gamma + beta`), it
    lets `profile_model` and `target_macs` count that layer's MACs:
    `register_handler(Affine, ElementwiseMacsHandler(elementwise=True))`.
    """

    def macs(self, layer, inputs, outputs):
        return math.prod(dims(outputs[0]))


class PoolingHandler(PassThroughHandler):
    """Pooling: one operation per window element of every output element.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> pool = keras.layers.MaxPooling2D(2)
    >>> handler = get_handler(pool)
    >>> type(handler).__name__
    'PoolingHandler'
    >>> handler.macs(pool, [(None, 8, 8, 8)], [(None, 4, 4, 8)])  # 4 x 4 x 8 x 2 x 2
    512
    """

    def macs(self, layer, inputs, outputs):
        return math.prod(dims(outputs[0])) * math.prod(layer.pool_size)


class GlobalPoolingHandler(PassThroughHandler):
    """Global pooling: one operation per input element.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> pool = keras.layers.GlobalAveragePooling2D()
    >>> handler = get_handler(pool)
    >>> type(handler).__name__
    'GlobalPoolingHandler'
    >>> handler.macs(pool, [(None, 4, 4, 8)], [(None, 8)])  # 4 x 4 x 8
    128
    """

    def macs(self, layer, inputs, outputs):
        return math.prod(dims(inputs[0]))


class AdaptivePoolingHandler(PassThroughHandler):
    """Adaptive pooling: the sum of its window sizes per channel.

    Example:

    Pooling 5 positions to 2 uses the overlapping windows `[0, 3)` and
    `[2, 5)`, 3 + 3 = 6 per axis:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> pool = keras.layers.AdaptiveAveragePooling2D((2, 2))
    >>> handler = get_handler(pool)
    >>> type(handler).__name__
    'AdaptivePoolingHandler'
    >>> handler.macs(pool, [(None, 5, 5, 8)], [(None, 2, 2, 8)])  # 6 x 6 x 8
    288
    """

    def macs(self, layer, inputs, outputs):
        # Window i of an axis of length n pooled to m spans
        # [floor(i * n / m), ceil((i + 1) * n / m)), as in keras.ops.adaptive_*_pool.
        in_spatial, c = split_shape(layer, inputs[0])
        out_spatial, _ = split_shape(layer, outputs[0])
        total = c
        for n, m in zip(in_spatial, out_spatial, strict=True):
            total *= sum(-(-(i + 1) * n // m) - (i * n // m) for i in range(m))
        return total
