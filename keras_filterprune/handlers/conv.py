"""Producers (Conv, Dense, transposed and separable convolutions) and depthwise
convolutions: the layers whose kernels the criteria score."""

from __future__ import annotations

import math

import numpy as np

from keras_filterprune.handlers.base import (
    FreezeHandler,
    LayerHandler,
    channels_last,
    dims,
    split_shape,
)

__all__ = [
    "ProducerHandler",
    "DenseHandler",
    "TransposeConvHandler",
    "SeparableConvHandler",
    "DepthwiseHandler",
]

MIXING_ACTIVATIONS = ("softmax", "log_softmax")


def _numpy(variable) -> np.ndarray:
    return np.asarray(variable.numpy())


def _multiplier(layer) -> int:
    if hasattr(layer, "depth_multiplier"):
        return int(layer.depth_multiplier)
    return int(layer.filters // layer.groups)  # a depthwise grouped Conv


class ProducerHandler(LayerHandler):
    """A convolution that mixes its input channels into new filters.

    Kernels are `(*spatial, C_in, N)`. Subclasses cover other layouts
    (`TransposeConvHandler`, `SeparableConvHandler`) and `Dense`.

    Args:
        width_key: `str`. The config key holding the number of output channels.
            Defaults to `"filters"`.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> conv = keras.layers.Conv2D(8, 3)
    >>> conv.build((None, 6, 6, 3))
    >>> handler = get_handler(conv)
    >>> type(handler).__name__, handler.produces, handler.latency_kind(conv)
    ('ProducerHandler', True, 'conv')
    >>> handler.kernel(conv).shape  # what the criteria score: (*spatial, C_in, N)
    (3, 3, 3, 8)
    >>> handler.macs(conv, [(None, 6, 6, 3)], [(None, 4, 4, 8)])  # 4x4 * 3x3 * 3 * 8
    3456
    >>> handler.prune_config(conv, conv.get_config(), 6)["filters"]
    6
    """

    produces = True

    def __init__(self, width_key: str = "filters") -> None:
        self.width_key = width_key

    @staticmethod
    def depthwise_multiplier(layer, in_width: int | None) -> int | None:
        """`m` when a grouped conv is depthwise (`groups == C_in`), else `None`."""
        groups = getattr(layer, "groups", 1)
        if groups > 1 and groups == in_width and layer.filters % groups == 0:
            return layer.filters // groups
        return None

    def frozen_reason(self, layer) -> str | None:
        """Why the layer's own filters cannot be pruned, or `None`."""
        if not channels_last(layer):
            return "channels_first data format"
        activation = getattr(layer, "activation", None)
        if getattr(activation, "__name__", "") in MIXING_ACTIVATIONS:
            return "softmax activation mixes the output channels"
        return None

    def propagate(self, layer, call, inputs, tracer):
        groups = getattr(layer, "groups", 1)
        if groups > 1:
            m = self.depthwise_multiplier(layer, tracer.channels(call.inputs[0]))
            if not channels_last(layer):
                return FreezeHandler(
                    f"grouped convolution (groups={groups}) in channels_first format"
                ).propagate(layer, call, inputs, tracer)
            if m is not None:
                return DepthwiseHandler().propagate(layer, call, inputs, tracer)
            return self._grouped(layer, call, inputs, tracer, groups)
        n_out = int(getattr(layer, self.width_key))
        ids = tracer.producer_ids(call.path, n_out)
        reason = self.frozen_reason(layer)
        if reason is not None:
            tracer.freeze(ids, call.path, reason)
        if not channels_last(layer):  # the last axis of the inputs is not channels
            for in_ids in inputs:
                tracer.freeze(in_ids, call.path, reason)
        return [ids]

    def _grouped(self, layer, call, inputs, tracer, groups: int) -> list:
        """A grouped convolution (`1 < groups < C_in`) is pruned slot-wise: slot
        `j` of every group (input channel `g·S + j`, filter `g·T + j`) is kept or
        removed in all groups together, so every group keeps the same number of
        channels, `groups` is unchanged and the kernel `(*k, S, N)` is sliced on
        plain axes."""
        ids = tracer.producer_ids(call.path, int(layer.filters))
        tracer.tie(ids.reshape(groups, -1))
        if inputs[0] is not None:
            tracer.tie(inputs[0].reshape(groups, -1))
        reason = self.frozen_reason(layer)
        if reason is not None:
            tracer.freeze(ids, call.path, reason)
        return [ids]

    @staticmethod
    def _slots(layer) -> int | None:
        """Input slots `S = C_in / groups` of a grouped (not depthwise) conv."""
        if getattr(layer, "groups", 1) > 1 and int(layer.kernel.shape[-2]) > 1:
            return int(layer.kernel.shape[-2])
        return None

    def kernel_input_keep(self, layer, in_keep):
        """A grouped conv's kernel has one input row per slot: input channel
        `g·S + j` feeds slot `j` of group `g`, and slots are kept alike in every
        group (`propagate` ties them), so the first group's flags are the rows'."""
        slots = self._slots(layer)
        if slots is not None:
            return np.asarray(in_keep, dtype=bool)[:slots]
        return super().kernel_input_keep(layer, in_keep)

    def map_weights(self, layer, weights, in_keep, out_keep, op):
        if self._slots(layer) is not None and in_keep is not None:
            in_keep = self.kernel_input_keep(layer, in_keep)
        return super().map_weights(layer, weights, in_keep, out_keep, op)

    def _kernel_rule(self, nd: int) -> list:
        return [(nd - 2, "in", 1), (nd - 1, "out", 1)]

    def weight_axes(self, layer):
        groups = getattr(layer, "groups", 1)
        if groups > 1 and self._slots(layer) is None:
            # depthwise as a grouped conv: out filter n ← channel n // m
            m = layer.filters // groups
            return [[(len(w.shape) - 1, "in", m)] for w in layer.weights]
        rules = []
        for w in layer.weights:
            name = w.name.split("/")[-1]
            if name == "bias":
                rules.append([(0, "out", 1)])
            elif name == "kernel":
                rules.append(self._kernel_rule(len(w.shape)))
            else:
                rules.append([])
        return rules

    def prune_config(self, layer, config, n_out):
        groups = getattr(layer, "groups", 1)
        if groups > 1 and self._slots(layer) is None:
            m = layer.filters // groups
            return {**config, "filters": int(n_out), "groups": int(n_out) // m}
        return {**config, self.width_key: int(n_out)}

    def kernel(self, layer):
        return _numpy(layer.kernel)

    def macs(self, layer, inputs, outputs):
        out_spatial, _ = split_shape(layer, outputs[0])
        _, c_in = split_shape(layer, inputs[0])
        return (
            math.prod(out_spatial)
            * math.prod(layer.kernel_size)
            * (c_in // layer.groups)
            * layer.filters
        )


class DenseHandler(ProducerHandler):
    """`Dense`: `prod(leading non-batch dims) * in * units` MACs.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> dense = keras.layers.Dense(4)
    >>> dense.build((None, 8))
    >>> handler = get_handler(dense)
    >>> type(handler).__name__, handler.kernel(dense).shape
    ('DenseHandler', (8, 4))
    >>> handler.macs(dense, [(None, 8)], [(None, 4)])  # 8 * 4
    32
    >>> handler.macs(dense, [(None, 5, 8)], [(None, 5, 4)])  # on 5 positions
    160
    >>> handler.prune_config(dense, dense.get_config(), 3)["units"]
    3
    """

    def __init__(self) -> None:
        super().__init__(width_key="units")

    def macs(self, layer, inputs, outputs):
        d = dims(inputs[0])
        return math.prod(d[:-1]) * d[-1] * layer.units


class TransposeConvHandler(ProducerHandler):
    """Transposed convolutions: kernels are `(*spatial, N, C_in)`.

    The criteria see them in the usual `(*spatial, C_in, N)` layout; a transposed
    convolution costs one MAC per input position, kernel tap, input and output
    channel.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> up = keras.layers.Conv2DTranspose(8, 3)
    >>> up.build((None, 4, 4, 3))
    >>> handler = get_handler(up)
    >>> type(handler).__name__
    'TransposeConvHandler'
    >>> tuple(up.kernel.shape), handler.kernel(up).shape
    ((3, 3, 8, 3), (3, 3, 3, 8))
    >>> handler.macs(up, [(None, 4, 4, 3)], [(None, 6, 6, 8)])  # 4x4 * 3x3 * 3 * 8
    3456
    """

    def _kernel_rule(self, nd):
        return [(nd - 2, "out", 1), (nd - 1, "in", 1)]

    def kernel(self, layer):
        return np.swapaxes(_numpy(layer.kernel), -1, -2)

    def macs(self, layer, inputs, outputs):
        in_spatial, c_in = split_shape(layer, inputs[0])
        return (
            math.prod(in_spatial)
            * math.prod(layer.kernel_size)
            * c_in
            * (layer.filters)
        )


class SeparableConvHandler(ProducerHandler):
    """Separable convolutions: a depthwise part, then a pointwise producer.

    The criteria score the pointwise kernel, whose input rows repeat each input
    channel `depth_multiplier` times; the MACs are those of both parts.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> conv = keras.layers.SeparableConv2D(8, 3, depth_multiplier=2)
    >>> conv.build((None, 6, 6, 3))
    >>> handler = get_handler(conv)
    >>> type(handler).__name__
    'SeparableConvHandler'
    >>> handler.kernel(conv).shape, handler.kernel_input_repeat(conv)
    ((1, 1, 6, 8), 2)
    >>> handler.macs(conv, [(None, 6, 6, 3)], [(None, 4, 4, 8)])  # 864 + 768
    1632
    """

    def weight_axes(self, layer):
        m = int(layer.depth_multiplier)
        rules = []
        for w in layer.weights:
            name, nd = w.name.split("/")[-1], len(w.shape)
            if name == "bias":
                rules.append([(0, "out", 1)])
            elif name == "depthwise_kernel":
                rules.append([(nd - 2, "in", 1)])
            elif name == "pointwise_kernel":
                rules.append([(nd - 2, "in", m), (nd - 1, "out", 1)])
            else:
                rules.append([])
        return rules

    def kernel(self, layer):
        return _numpy(layer.pointwise_kernel)

    def kernel_input_repeat(self, layer):
        return int(layer.depth_multiplier)

    def macs(self, layer, inputs, outputs):
        pointwise = (
            math.prod(split_shape(layer, outputs[0])[0])
            * split_shape(layer, inputs[0])[1]
            * layer.depth_multiplier
            * layer.filters
        )
        return DepthwiseHandler().macs(layer, inputs, outputs) + pointwise


class DepthwiseHandler(LayerHandler):
    """Depthwise convolution: channel `c` maps to outputs `c·m … c·m + m − 1`.

    It makes no channels of its own: pruning the channels of its input removes
    their `m` outputs and kernels too.

    Example:

    >>> import keras
    >>> from keras_filterprune import apply_plan, plan_pruning
    >>> from keras_filterprune.graph import graph_of
    >>> from keras_filterprune.handlers import get_handler
    >>> model = keras.Sequential([
    ...     keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 1, name="conv"),
    ...     keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
    ...     keras.layers.Conv2D(2, 1, name="head")])
    >>> graph_of(model).group_of("conv").members
    ['conv', 'dw', 'head']
    >>> pruned = apply_plan(model, plan_pruning(model, ratio=0.5))
    >>> pruned.get_layer("dw").output.shape  # 2 channels x 2
    (None, 4, 4, 4)
    >>> dw = model.get_layer("dw")
    >>> get_handler(dw).latency_kind(dw)
    'depthwise'
    >>> get_handler(dw).macs(dw, [(None, 6, 6, 4)], [(None, 4, 4, 8)])  # 4x4*3x3*4*2
    1152
    """

    def latency_kind(self, layer):
        return "depthwise"

    def propagate(self, layer, call, inputs, tracer):
        if not channels_last(layer):
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

    def macs(self, layer, inputs, outputs):
        out_spatial, _ = split_shape(layer, outputs[0])
        _, c_in = split_shape(layer, inputs[0])
        return (
            math.prod(out_spatial)
            * math.prod(layer.kernel_size)
            * c_in
            * layer.depth_multiplier
        )
