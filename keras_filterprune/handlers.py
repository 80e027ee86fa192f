"""Per-layer channel rules: how each layer class moves, mixes and stores channels.

Every channel of every tensor in a traced model is an *element id*. A handler says,
for one layer class, which element ids its outputs carry (`propagate`), which axes of
its weights follow its input or output channels (`weight_axes`), and how its config
changes when its own output channels are pruned (`prune_config`). The graph tracer,
the surgery and the masks all read this one table, so teaching keras-filterprune a
custom layer is one `register_handler` call:

>>> import keras
>>> from keras_filterprune import register_handler
>>> from keras_filterprune.handlers import PassThroughHandler
>>> @keras.saving.register_keras_serializable(package="doc_example")
... class Scale(keras.layers.Layer):  # a per-channel scale, like ConvNeXt's
...     def build(self, input_shape):
...         self.gamma = self.add_weight(shape=(input_shape[-1],), name="gamma")
...     def call(self, x):
...         return x * self.gamma
>>> register_handler(Scale, PassThroughHandler())
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from keras_filterprune.walk import Call

__all__ = [
    "LayerHandler",
    "PassThroughHandler",
    "ProducerHandler",
    "DepthwiseHandler",
    "MergeHandler",
    "ConcatenateHandler",
    "FlattenHandler",
    "FreezeHandler",
    "register_handler",
    "get_handler",
]

# A weight axis rule: (axis, source, repeat). `source` is "in" (the layer's first
# input channels, each repeated `repeat` times) or "out" (the layer's own filters).
AxisRule = tuple[int, str, int]


class LayerHandler:
    """Base class of the channel rules of one layer class.

    Subclass it to teach keras-filterprune a custom layer, then call
    `register_handler(MyLayer, MyHandler())`. Handlers are stateless.
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
                `tracer.freeze(ids, path, reason)`, `tracer.union(a, b)`.
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


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") != "channels_first"


class FreezeHandler(LayerHandler):
    """A layer whose channel mapping is unknown: every group reaching it is frozen."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason

    def propagate(self, layer, call, inputs, tracer):
        reason = self.reason or f"{type(layer).__name__} is not channel-aware"
        for ids in inputs:
            tracer.freeze(ids, call.path, reason)
        return [
            tracer.opaque(tracer.channels(key), call.path, reason)
            for key in call.outputs
        ]


class PassThroughHandler(LayerHandler):
    """Channels pass through unchanged; per-channel weights are sliced.

    Every weight whose last axis has the channel count is sliced along it (BatchNorm
    gamma/beta/moving statistics, PReLU alpha, a per-channel scale).

    Args:
        elementwise: `bool`. Whether the layer maps each element on its own (an
            activation), as opposed to pooling or padding. Defaults to `False`.
    """

    def __init__(self, elementwise: bool = False) -> None:
        self.elementwise = elementwise

    def propagate(self, layer, call, inputs, tracer):
        if not _channels_last(layer):
            return FreezeHandler("channels_first data format").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0] for _ in call.outputs]

    def weight_axes(self, layer):
        width = _input_channels(layer)
        return [
            [(len(w.shape) - 1, "in", 1)] if w.shape and w.shape[-1] == width else []
            for w in layer.weights
        ]


def _input_channels(layer) -> int | None:
    for w in layer.weights:
        if w.shape:
            return int(w.shape[-1])
    return None


class BatchNormHandler(PassThroughHandler):
    """BatchNormalization on the channel axis; any other axis freezes."""

    def propagate(self, layer, call, inputs, tracer):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        shape = tracer.shape(call.inputs[0])
        last = -1 if shape is None else len(shape) - 1
        if axis not in (-1, last, [-1], (-1,), (last,)):
            return FreezeHandler(
                f"normalises over axis {axis}, not channels"
            ).propagate(layer, call, inputs, tracer)
        return [inputs[0]]


class ActivationHandler(PassThroughHandler):
    """Elementwise activations; softmax-like ones mix channels and freeze."""

    _MIXING = {"softmax", "log_softmax"}

    def propagate(self, layer, call, inputs, tracer):
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", str(activation))
        if name in self._MIXING:
            return FreezeHandler(f"{name} mixes the channel axis").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class SoftmaxHandler(PassThroughHandler):
    def propagate(self, layer, call, inputs, tracer):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        shape = tracer.shape(call.inputs[0])
        last = -1 if shape is None else len(shape) - 1
        if any(a in (-1, last) for a in axis):
            return FreezeHandler("softmax over the channel axis").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class RescalingHandler(PassThroughHandler):
    def propagate(self, layer, call, inputs, tracer):
        if np.size(layer.scale) != 1 or np.size(layer.offset) != 1:
            return FreezeHandler("per-channel rescaling").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class ProducerHandler(LayerHandler):
    """A layer that mixes its input channels into new filters (Conv, Dense).

    Args:
        width_key: `str`. The config key holding the number of output channels.
        kernel_layout: `str`. `"in_out"` for kernels shaped `(*spatial, C_in, N)`,
            `"out_in"` for transposed convolutions `(*spatial, N, C_in)`,
            `"separable"` for separable convolutions (depthwise + pointwise).
    """

    produces = True

    def __init__(self, width_key: str = "filters", kernel_layout: str = "in_out"):
        self.width_key = width_key
        self.kernel_layout = kernel_layout

    @staticmethod
    def depthwise_multiplier(layer, in_width: int | None) -> int | None:
        """`m` when a grouped conv is depthwise (`groups == C_in`), else `None`."""
        groups = getattr(layer, "groups", 1)
        if groups > 1 and groups == in_width and layer.filters % groups == 0:
            return layer.filters // groups
        return None

    def frozen_reason(self, layer) -> str | None:
        """Why the layer's own filters cannot be pruned, or `None`."""
        if not _channels_last(layer):
            return "channels_first data format"
        activation = getattr(layer, "activation", None)
        if getattr(activation, "__name__", "") in ActivationHandler._MIXING:
            return "softmax activation mixes the output channels"
        return None

    def propagate(self, layer, call, inputs, tracer):
        groups = getattr(layer, "groups", 1)
        if groups > 1:
            m = self.depthwise_multiplier(layer, tracer.channels(call.inputs[0]))
            if m is None or not _channels_last(layer):
                return FreezeHandler(
                    f"grouped convolution (groups={groups}) ties in/out channels"
                ).propagate(layer, call, inputs, tracer)
            return DepthwiseHandler().propagate(layer, call, inputs, tracer)
        n_out = int(getattr(layer, self.width_key))
        ids = tracer.producer_ids(call.path, n_out)
        reason = self.frozen_reason(layer)
        if reason is not None:
            tracer.freeze(ids, call.path, reason)
        if not _channels_last(layer):  # the last axis of the inputs is not channels
            for in_ids in inputs:
                tracer.freeze(in_ids, call.path, reason)
        return [ids]

    def weight_axes(self, layer):
        groups = getattr(layer, "groups", 1)
        if groups > 1:  # depthwise as a grouped conv: out filter n ← channel n // m
            m = layer.filters // groups
            return [[(len(w.shape) - 1, "in", m)] for w in layer.weights]
        rules = []
        for w in layer.weights:
            name = w.name.split("/")[-1]
            nd = len(w.shape)
            if name == "bias":
                rules.append([(0, "out", 1)])
            elif name == "depthwise_kernel":
                rules.append([(nd - 2, "in", 1)])
            elif name == "pointwise_kernel":
                rules.append(
                    [(nd - 2, "in", layer.depth_multiplier), (nd - 1, "out", 1)]
                )
            elif name == "kernel" and self.kernel_layout == "out_in":
                rules.append([(nd - 2, "out", 1), (nd - 1, "in", 1)])
            elif name == "kernel":
                rules.append([(nd - 2, "in", 1), (nd - 1, "out", 1)])
            else:
                rules.append([])
        return rules

    def prune_config(self, layer, config, n_out):
        groups = getattr(layer, "groups", 1)
        if groups > 1:
            m = layer.filters // groups
            return {**config, "filters": int(n_out), "groups": int(n_out) // m}
        return {**config, self.width_key: int(n_out)}

    def kernel(self, layer):
        if self.kernel_layout == "separable":
            return np.asarray(layer.pointwise_kernel.numpy())
        kernel = np.asarray(layer.kernel.numpy())
        if self.kernel_layout == "out_in":
            kernel = np.swapaxes(kernel, -1, -2)
        return kernel


def _multiplier(layer) -> int:
    if hasattr(layer, "depth_multiplier"):
        return int(layer.depth_multiplier)
    return int(layer.filters // layer.groups)  # a depthwise grouped Conv


class DepthwiseHandler(LayerHandler):
    """Depthwise convolution: channel `c` maps to outputs `c·m … c·m + m − 1`."""

    def propagate(self, layer, call, inputs, tracer):
        if not _channels_last(layer):
            return FreezeHandler("channels_first data format").propagate(
                layer, call, inputs, tracer
            )
        if inputs[0] is None:
            return [None]
        return [np.repeat(inputs[0], _multiplier(layer))]

    def weight_axes(self, layer):
        rules = []
        for w in layer.weights:
            if w.name.split("/")[-1] == "bias":
                rules.append([(0, "in", _multiplier(layer))])
            else:
                rules.append([(len(w.shape) - 2, "in", 1)])
        return rules


class MergeHandler(LayerHandler):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: one shared channel set.

    A broadcast input with a single channel is frozen (it has nothing to prune).
    """

    def propagate(self, layer, call, inputs, tracer):
        if call.constants:
            return FreezeHandler("an array constant takes part").propagate(
                layer, call, inputs, tracer
            )
        known = [ids for ids in inputs if ids is not None]
        if len(known) != len(inputs):
            return FreezeHandler("an input has an unknown channel count").propagate(
                layer, call, inputs, tracer
            )
        width = max(len(ids) for ids in known)
        full = [ids for ids in known if len(ids) == width]
        for ids in known:
            if len(ids) == width:
                tracer.union(full[0], ids)
            elif len(ids) == 1:
                tracer.freeze(ids, call.path, "broadcast single channel")
            else:
                return FreezeHandler("inputs of different channel counts").propagate(
                    layer, call, inputs, tracer
                )
        return [full[0]]


class ConcatenateHandler(LayerHandler):
    """Concatenate: channel axis → offsets; any other axis → one channel set."""

    def propagate(self, layer, call, inputs, tracer):
        if any(ids is None for ids in inputs):
            return FreezeHandler("an input has an unknown channel count").propagate(
                layer, call, inputs, tracer
            )
        shape = tracer.shape(call.inputs[0])
        rank = len(shape) if shape is not None else None
        if layer.axis == -1 or (rank is not None and layer.axis == rank - 1):
            return [np.concatenate(inputs)]
        return MergeHandler().propagate(layer, call, inputs, tracer)


class FlattenHandler(LayerHandler):
    """Flatten of `(…, P positions, C)`: feature `p·C + c` carries channel `c`."""

    def propagate(self, layer, call, inputs, tracer):
        shape = tracer.shape(call.inputs[0])
        if not _channels_last(layer) or shape is None or inputs[0] is None:
            return FreezeHandler("channels_first or unknown shape").propagate(
                layer, call, inputs, tracer
            )
        spatial = shape[1:-1]
        if any(d is None for d in spatial):
            return FreezeHandler("unknown spatial size").propagate(
                layer, call, inputs, tracer
            )
        return [np.tile(inputs[0], math.prod(spatial))]


class LayerScaleHandler(PassThroughHandler):
    """ConvNeXt's per-channel `LayerScale` (its config stores the width)."""

    def prune_config(self, layer, config, n_out):
        return {**config, "projection_dim": int(n_out)}


class ReshapeHandler(LayerHandler):
    """Reshape that keeps the channel axis (SE blocks' `(C,) → (1, 1, C)`) or
    flattens it (`(…, C) → (P·C,)`); any other reshape freezes."""

    def propagate(self, layer, call, inputs, tracer):
        in_shape = tracer.shape(call.inputs[0])
        out_shape = tracer.shape(call.outputs[0])
        if in_shape and out_shape and inputs[0] is not None:
            if out_shape[-1] == in_shape[-1]:
                return [inputs[0]]
            if len(out_shape) == 2:
                return FlattenHandler().propagate(layer, call, inputs, tracer)
        return _FREEZE_RESHAPE.propagate(layer, call, inputs, tracer)

    def prune_config(self, layer, config, n_out):
        target = list(config["target_shape"])
        if target[-1] != -1:
            target[-1] = int(n_out)
        return {**config, "target_shape": tuple(target)}


class ChannelPadHandler(LayerHandler):
    """Option-A shortcut (`keras_filterprune.models.ShortcutPad`): zero channels
    padded on both sides of the (pruned) input channels."""

    def propagate(self, layer, call, inputs, tracer):
        reason = "zero padding channels"
        before = tracer.opaque(layer.pad_before, call.path, reason)
        after = tracer.opaque(layer.pad_after, call.path, reason)
        return [np.concatenate([before, inputs[0], after])]


_PASS = PassThroughHandler()
_ELEMENTWISE = PassThroughHandler(elementwise=True)
_FREEZE_RESHAPE = FreezeHandler("reshapes the channel axis")
_REGISTRY: dict[type, LayerHandler] = {}
_BY_NAME: dict[str, LayerHandler] = {
    # keras.applications layers that are not exported as public classes.
    "LayerScale": LayerScaleHandler(),
    "StochasticDepth": _PASS,
    "ShortcutPad": ChannelPadHandler(),
}
# Keras ops used as operations of a Functional graph (`x + y`, `x * s`).
_BY_NAME.update(
    {name: MergeHandler() for name in ("Add", "Subtract", "Multiply", "Maximum",
                                      "Minimum", "Divide", "TrueDivide")}
)  # fmt: skip


def _init_registry() -> None:
    L = keras.layers
    producers = {
        L.Conv1D: ProducerHandler(),
        L.Conv2D: ProducerHandler(),
        L.Conv3D: ProducerHandler(),
        L.Conv1DTranspose: ProducerHandler(kernel_layout="out_in"),
        L.Conv2DTranspose: ProducerHandler(kernel_layout="out_in"),
        L.Conv3DTranspose: ProducerHandler(kernel_layout="out_in"),
        L.SeparableConv1D: ProducerHandler(kernel_layout="separable"),
        L.SeparableConv2D: ProducerHandler(kernel_layout="separable"),
        L.Dense: ProducerHandler(width_key="units"),
    }
    elementwise = [
        L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Dropout, L.SpatialDropout1D,
        L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianDropout, L.GaussianNoise,
        L.AlphaDropout, L.ActivityRegularization, L.Identity,
    ]  # fmt: skip
    passing = [
        L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D,
        L.AveragePooling2D, L.AveragePooling3D, L.GlobalMaxPooling1D,
        L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.GlobalAveragePooling1D,
        L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.ZeroPadding1D,
        L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D,
        L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    ]  # fmt: skip
    frozen = {
        L.Permute: FreezeHandler("permutes axes"),
        L.RepeatVector: _FREEZE_RESHAPE,
        L.Lambda: FreezeHandler("Lambda layers are opaque"),
        L.LayerNormalization: FreezeHandler(
            "LayerNormalization normalises over the channels: pruning changes it"
        ),
        L.GroupNormalization: FreezeHandler("GroupNormalization mixes channels"),
        L.UnitNormalization: FreezeHandler("UnitNormalization mixes channels"),
        L.Normalization: FreezeHandler("per-channel input normalisation"),
    }
    merges = [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum]
    _REGISTRY.update(producers)
    _REGISTRY.update({cls: _ELEMENTWISE for cls in elementwise})
    _REGISTRY.update({cls: _PASS for cls in passing})
    _REGISTRY.update(frozen)
    _REGISTRY.update({cls: MergeHandler() for cls in merges})
    _REGISTRY.update(
        {
            L.BatchNormalization: BatchNormHandler(elementwise=True),
            L.Activation: ActivationHandler(elementwise=True),
            L.Softmax: SoftmaxHandler(),
            L.Rescaling: RescalingHandler(),
            L.DepthwiseConv1D: DepthwiseHandler(),
            L.DepthwiseConv2D: DepthwiseHandler(),
            L.Concatenate: ConcatenateHandler(),
            L.Flatten: FlattenHandler(),
            L.Reshape: ReshapeHandler(),
        }
    )


_init_registry()


def register_handler(layer_cls: type | str, handler: LayerHandler) -> None:
    """Teaches keras-filterprune how a layer class moves and stores channels.

    Args:
        layer_cls: A `keras.layers.Layer` subclass, or its class name as a string
            (for classes that are not importable). Subclasses inherit the handler.
        handler: A `LayerHandler` instance (e.g. `PassThroughHandler()` for a
            per-channel layer, `FreezeHandler("why")` to always freeze).

    Raises:
        TypeError: if `handler` is not a `LayerHandler` or `layer_cls` is not a
            layer class or a string.
    """
    if not isinstance(handler, LayerHandler):
        raise TypeError(
            "`handler` must be a keras_filterprune.handlers.LayerHandler instance. "
            f"Received: handler of type {type(handler).__name__}."
        )
    if isinstance(layer_cls, str):
        _BY_NAME[layer_cls] = handler
    elif isinstance(layer_cls, type) and issubclass(layer_cls, keras.layers.Layer):
        _REGISTRY[layer_cls] = handler
    else:
        raise TypeError(
            "`layer_cls` must be a keras.layers.Layer subclass or a class name. "
            f"Received: layer_cls={layer_cls!r}."
        )


def get_handler(layer: Any) -> LayerHandler | None:
    """Returns the handler of a layer (looked up along its MRO), or `None`."""
    for cls in type(layer).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
        if cls.__name__ in _BY_NAME:
            return _BY_NAME[cls.__name__]
    return None
