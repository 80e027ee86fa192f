"""Handlers of layers that carry, merge, reorder or normalise channels without
making new ones: BatchNorm, activations, merges, Concatenate, Flatten, Reshape."""

from __future__ import annotations

import math

import numpy as np

from keras_filterprune.handlers.base import (
    ElementwiseMacsHandler,
    FreezeHandler,
    LayerHandler,
    PassThroughHandler,
    channels_last,
    dims,
)
from keras_filterprune.handlers.conv import MIXING_ACTIVATIONS

__all__ = [
    "ActivationHandler",
    "BatchNormHandler",
    "ConcatenateHandler",
    "FlattenHandler",
    "LayerScaleHandler",
    "MergeHandler",
    "NormHandler",
    "PadOpHandler",
    "ReduceOpHandler",
    "SplitOpHandler",
    "ReshapeHandler",
    "RescalingHandler",
    "SoftmaxHandler",
]


def _is_last_axis(axis, shape) -> bool:
    last = -1 if shape is None else len(shape) - 1
    return axis in (-1, last)


class BatchNormHandler(ElementwiseMacsHandler):
    """BatchNormalization on the channel axis; any other axis freezes. Its moving
    mean and variance are running statistics (`statistics_weights`).

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(layer):  # why the channels of "dense" are frozen, or None
    ...     model = keras.Sequential([
    ...         keras.Input((5, 8)), keras.layers.Dense(4, name="dense"), layer,
    ...         keras.layers.Dense(2, name="head")])
    ...     return trace_channels(model).group_of("dense").frozen
    >>> print(frozen(keras.layers.BatchNormalization(name="bn")))
    None
    >>> frozen(keras.layers.BatchNormalization(axis=1, name="bn"))
    "normalises over axis 1, not channels (at layer 'bn')"
    >>> from keras_filterprune.handlers import get_handler
    >>> bn = keras.layers.BatchNormalization()
    >>> handler = get_handler(bn)
    >>> type(handler).__name__, handler.statistics_weights(bn)
    ('BatchNormHandler', ('moving_mean', 'moving_variance'))
    >>> handler.macs(bn, [(None, 4, 4, 8)], [(None, 4, 4, 8)])  # x * scale + shift
    128
    """

    def statistics_weights(self, layer):
        return ("moving_mean", "moving_variance")

    def propagate(self, layer, call, inputs, tracer):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        if isinstance(axis, tuple) and len(axis) == 1:
            axis = axis[0]
        if not _is_last_axis(axis, tracer.shape(call.inputs[0])):
            return FreezeHandler(
                f"normalises over axis {axis}, not channels"
            ).propagate(layer, call, inputs, tracer)
        return [inputs[0]]


class NormHandler(PassThroughHandler):
    """LayerNormalization, UnitNormalization and GroupNormalization over the
    channel (last) axis.

    They mix the channels (a mean and a variance over them), so their groups are
    frozen, but only *approximately* so: `plan_pruning(..., prune_norms=True)`
    prunes them and slices gamma/beta, and the statistics then change. A
    GroupNormalization keeps its groups whole: the channels of one normalisation
    group are one channel of the pruning group, and `groups` shrinks with them.
    Any other axis freezes for good.

    Example:

    >>> import keras
    >>> from keras_filterprune import apply_plan, plan_pruning
    >>> from keras_filterprune.graph import trace_channels
    >>> model = keras.Sequential([
    ...     keras.Input((5, 8)), keras.layers.Dense(4, name="dense"),
    ...     keras.layers.LayerNormalization(name="norm"),
    ...     keras.layers.Dense(2, name="head")])
    >>> group = trace_channels(model).group_of("dense")
    >>> print(group.frozen)
    LayerNormalization normalises over the channels (prune_norms=True prunes it,
    approximately) (at layer 'norm')
    >>> group.approximate
    True
    >>> plan = plan_pruning(model, ratio=0.5, prune_norms=True)
    >>> apply_plan(model, plan).get_layer("norm").get_weights()[0].shape
    (2,)
    """

    def propagate(self, layer, call, inputs, tracer):
        cls = type(layer).__name__
        axis = getattr(layer, "axis", -1)
        axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        shape = tracer.shape(call.inputs[0])
        ids = inputs[0]
        if ids is None or len(axes) != 1 or not _is_last_axis(axes[0], shape):
            return FreezeHandler(
                f"{cls} normalises over axis {axis}, not only the channels"
            ).propagate(layer, call, inputs, tracer)
        groups = getattr(layer, "groups", None)
        if groups is not None:
            if not layer.weights or len(ids) % groups:
                return FreezeHandler(
                    f"{cls} without gamma/beta cannot be pruned by whole groups"
                ).propagate(layer, call, inputs, tracer)
            tracer.tie(ids.reshape(groups, -1).T)  # a group's channels as one
        tracer.freeze(
            ids,
            call.path,
            f"{cls} normalises over the channels (prune_norms=True prunes it, "
            "approximately)",
            approximate=True,
        )
        return [ids]

    def prune_config(self, layer, config, n_out):
        groups = getattr(layer, "groups", None)
        if groups is None:
            return config
        size = int(layer.weights[0].shape[-1]) // int(groups)
        return {**config, "groups": int(n_out) // size}


class PadOpHandler(PassThroughHandler):
    """`keras.ops.pad` in a Functional graph: channels pass through when the
    channel (last) axis is not padded; otherwise the group freezes.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(pad_width):  # why the channels of "conv" are frozen, or None
    ...     inputs = keras.Input((6, 6, 3))
    ...     x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    ...     x = keras.ops.pad(x, pad_width)
    ...     outputs = keras.layers.Conv2D(2, 1, name="head")(x)
    ...     graph = trace_channels(keras.Model(inputs, outputs))
    ...     return graph.group_of("conv").frozen
    >>> print(frozen([[0, 0], [1, 1], [1, 1], [0, 0]]))  # height and width
    None
    >>> print(frozen([[0, 0], [0, 0], [0, 0], [0, 2]]))  # two more channels
    pads the channel axis ([[0, 0], [0, 0], [0, 0], [0, 2]]) (at layer 'pad...')
    """

    def propagate(self, layer, call, inputs, tracer):
        pad_width = getattr(layer, "pad_width", None)
        try:
            last = tuple(int(v) for v in pad_width[-1])
        except (TypeError, ValueError, IndexError):
            last = None
        if last != (0, 0):
            return FreezeHandler(f"pads the channel axis ({pad_width})").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class ReduceOpHandler(PassThroughHandler):
    """`keras.ops.mean/max/min/sum` over axes other than the channel (last) axis
    (the squeeze of an SE block: `ops.mean(x, axis=(1, 2), keepdims=True)`):
    channels pass through. A reduction over the channels, or over every axis,
    freezes. One operation per input element.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(axis):  # why the channels of "conv" are frozen, or None
    ...     inputs = keras.Input((6, 6, 3))
    ...     x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    ...     x = keras.ops.mean(x, axis=axis, keepdims=True)
    ...     outputs = keras.layers.Conv2D(2, 1, name="head")(x)
    ...     graph = trace_channels(keras.Model(inputs, outputs))
    ...     return graph.group_of("conv").frozen
    >>> print(frozen((1, 2)))  # the squeeze of an SE block
    None
    >>> print(frozen(-1))  # the mean over the channels
    reduces over the channel axis (axis=[-1]) (at layer 'mean...')
    """

    def propagate(self, layer, call, inputs, tracer):
        axis = getattr(layer, "axis", None)
        shape = tracer.shape(call.inputs[0])
        axes = axis if isinstance(axis, (list, tuple)) else (axis,)
        if (
            axis is None
            or shape is None
            or any(a is None or a in (-1, len(shape) - 1) for a in axes)
        ):
            return FreezeHandler(
                f"reduces over the channel axis (axis={axis})"
            ).propagate(layer, call, inputs, tracer)
        return [inputs[0]]

    def macs(self, layer, inputs, outputs):
        return math.prod(dims(inputs[0]))


class SplitOpHandler(LayerHandler):
    """`keras.ops.split(x, n, axis=-1)` into `n` equal channel sections (CSPNet's
    cross-stage split). Slot `j` of every section is kept or removed together,
    so the sections stay equal and the op needs no change; a split at explicit
    indices or on another axis freezes.

    Example:

    The 8 filters of "conv" are split into two halves of 4: its group has 4
    channels, each of them a filter of either half.

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> inputs = keras.Input((6, 6, 3))
    >>> x = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    >>> a, b = keras.ops.split(x, 2, axis=-1)
    >>> x = keras.layers.Concatenate()([keras.layers.Conv2D(4, 1)(a), b])
    >>> outputs = keras.layers.Conv2D(2, 1, name="head")(x)
    >>> group = trace_channels(keras.Model(inputs, outputs)).group_of("conv")
    >>> group.width, group.frozen
    (4, None)
    >>> group.producers["conv"]  # filter j and filter 4 + j are one channel
    array([0, 1, 2, 3, 0, 1, 2, 3])
    """

    def propagate(self, layer, call, inputs, tracer):
        sections = getattr(layer, "indices_or_sections", None)
        axis = getattr(layer, "axis", None)
        shape = tracer.shape(call.inputs[0])
        ids = inputs[0]
        if (
            ids is None
            or not isinstance(sections, int)
            or axis is None
            or not _is_last_axis(axis, shape)
            or len(ids) % sections
            or len(call.outputs) != sections
        ):
            return FreezeHandler(
                f"splits the channel axis at {sections!r} (axis {axis})"
            ).propagate(layer, call, inputs, tracer)
        parts = ids.reshape(sections, -1)
        tracer.tie(parts)
        return list(parts)


class ActivationHandler(PassThroughHandler):
    """Elementwise activations; softmax-like ones mix channels and freeze.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(layer):  # why the channels of "dense" are frozen, or None
    ...     model = keras.Sequential([
    ...         keras.Input((5, 8)), keras.layers.Dense(4, name="dense"), layer,
    ...         keras.layers.Dense(2, name="head")])
    ...     return trace_channels(model).group_of("dense").frozen
    >>> print(frozen(keras.layers.Activation("relu", name="act")))
    None
    >>> frozen(keras.layers.Activation("softmax", name="act"))
    "softmax mixes the channel axis (at layer 'act')"
    """

    def propagate(self, layer, call, inputs, tracer):
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", str(activation))
        if name in MIXING_ACTIVATIONS:
            return FreezeHandler(f"{name} mixes the channel axis").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class SoftmaxHandler(PassThroughHandler):
    """`Softmax` over axes other than the channels; over the channels it mixes
    them, and the group freezes.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(layer):  # why the channels of "dense" are frozen, or None
    ...     model = keras.Sequential([
    ...         keras.Input((5, 8)), keras.layers.Dense(4, name="dense"), layer,
    ...         keras.layers.Dense(2, name="head")])
    ...     return trace_channels(model).group_of("dense").frozen
    >>> print(frozen(keras.layers.Softmax(axis=1, name="softmax")))  # positions
    None
    >>> frozen(keras.layers.Softmax(name="softmax"))  # the channels
    "softmax over the channel axis (at layer 'softmax')"
    """

    def propagate(self, layer, call, inputs, tracer):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        shape = tracer.shape(call.inputs[0])
        if any(_is_last_axis(a, shape) for a in axis):
            return FreezeHandler("softmax over the channel axis").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class RescalingHandler(PassThroughHandler):
    """`Rescaling` by one scale and offset; per-channel ones freeze (surgery
    does not slice them).

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(layer):  # why the channels of "dense" are frozen, or None
    ...     model = keras.Sequential([
    ...         keras.Input((5, 8)), keras.layers.Dense(4, name="dense"), layer,
    ...         keras.layers.Dense(2, name="head")])
    ...     return trace_channels(model).group_of("dense").frozen
    >>> print(frozen(keras.layers.Rescaling(0.5, name="rescale")))
    None
    >>> frozen(keras.layers.Rescaling([1.0, 2.0, 3.0, 4.0], name="rescale"))
    "per-channel rescaling (at layer 'rescale')"
    """

    def propagate(self, layer, call, inputs, tracer):
        if np.size(layer.scale) != 1 or np.size(layer.offset) != 1:
            return FreezeHandler("per-channel rescaling").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class MergeHandler(LayerHandler):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: one shared channel set.

    A broadcast input with a single channel is frozen (it has nothing to prune).

    Example:

    The inputs of a residual `Add` carry the same channels: both convolutions
    lose the same filters, in one group.

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    >>> y = keras.layers.Conv2D(4, 3, padding="same", name="b")(x)
    >>> z = keras.layers.Add()([x, y])
    >>> outputs = keras.layers.Conv2D(2, 1, name="head")(z)
    >>> group = trace_channels(keras.Model(inputs, outputs)).group_of("b")
    >>> sorted(group.producers), group.width
    (['a', 'b'], 4)
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
    """Concatenate: channel axis → offsets; any other axis → one channel set.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def groups(axis):  # the producers of each group, with its width
    ...     inputs = keras.Input((6, 6, 3))
    ...     a = keras.layers.Conv2D(4, 3, name="a")(inputs)
    ...     b = keras.layers.Conv2D(4, 3, name="b")(inputs)
    ...     x = keras.layers.Concatenate(axis=axis)([a, b])
    ...     outputs = keras.layers.Conv2D(2, 1, name="head")(x)
    ...     graph = trace_channels(keras.Model(inputs, outputs))
    ...     return [(sorted(g.producers), g.width) for g in graph.groups]
    >>> groups(-1)  # side by side: each conv is pruned on its own
    [(['a'], 4), (['b'], 4), (['head'], 2)]
    >>> groups(1)  # stacked along the height: channel c of both is one
    [(['a', 'b'], 4), (['head'], 2)]
    """

    def propagate(self, layer, call, inputs, tracer):
        if any(ids is None for ids in inputs):
            return FreezeHandler("an input has an unknown channel count").propagate(
                layer, call, inputs, tracer
            )
        shape = tracer.shape(call.inputs[0])
        if layer.axis == -1 or (shape is not None and layer.axis == len(shape) - 1):
            return [np.concatenate(inputs)]
        return MergeHandler().propagate(layer, call, inputs, tracer)


class FlattenHandler(LayerHandler):
    """Flatten of `(…, P positions, C)`: feature `p·C + c` carries channel `c`.

    Example:

    Pruning a filter of the conv removes one row of the next `Dense` kernel per
    position:

    >>> import keras
    >>> from keras_filterprune import apply_plan, plan_pruning
    >>> model = keras.Sequential([
    ...     keras.Input((4, 4, 3)), keras.layers.Conv2D(4, 3, name="conv"),
    ...     keras.layers.Flatten(), keras.layers.Dense(3, name="head")])
    >>> model.get_layer("head").get_weights()[0].shape  # 2x2 positions x 4
    (16, 3)
    >>> pruned = apply_plan(model, plan_pruning(model, ratio=0.5))
    >>> pruned.get_layer("head").get_weights()[0].shape  # 2x2 positions x 2
    (8, 3)
    """

    def propagate(self, layer, call, inputs, tracer):
        shape = tracer.shape(call.inputs[0])
        if not channels_last(layer) or shape is None or inputs[0] is None:
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
    """ConvNeXt's per-channel `LayerScale` (its config stores the width).

    It is registered by class name (`keras.applications` does not export the
    class), so any layer class named `LayerScale` gets it.

    Example:

    >>> import keras
    >>> from keras_filterprune.handlers import get_handler
    >>> class LayerScale(keras.layers.Layer):  # stands in for ConvNeXt's
    ...     pass
    >>> layer = LayerScale()
    >>> handler = get_handler(layer)
    >>> type(handler).__name__
    'LayerScaleHandler'
    >>> handler.prune_config(layer, {"init_values": 1e-6, "projection_dim": 96}, 48)
    {'init_values': 1e-06, 'projection_dim': 48}
    """

    def prune_config(self, layer, config, n_out):
        return {**config, "projection_dim": int(n_out)}


_FREEZE_RESHAPE = FreezeHandler("reshapes the channel axis")


class ReshapeHandler(LayerHandler):
    """Reshape that keeps the channel axis (SE blocks' `(C,) → (1, 1, C)`) or
    flattens it (`(…, C) → (P·C,)`); any other reshape freezes.

    Example:

    >>> import keras
    >>> from keras_filterprune.graph import trace_channels
    >>> def frozen(layer):  # why the channels of "dense" are frozen, or None
    ...     model = keras.Sequential([
    ...         keras.Input((5, 8)), keras.layers.Dense(4, name="dense"), layer,
    ...         keras.layers.Dense(2, name="head")])
    ...     return trace_channels(model).group_of("dense").frozen
    >>> print(frozen(keras.layers.Reshape((1, 5, 4), name="reshape")))
    None
    >>> frozen(keras.layers.Reshape((4, 5), name="reshape"))
    "reshapes the channel axis (at layer 'reshape')"

    When the channels are pruned, the target shape follows them:

    >>> from keras_filterprune.handlers import get_handler
    >>> reshape = keras.layers.Reshape((1, 1, 8))
    >>> get_handler(reshape).prune_config(reshape, reshape.get_config(), 6)[
    ...     "target_shape"]
    (1, 1, 6)
    """

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
