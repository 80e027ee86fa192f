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
from keras_filterprune.handlers.conv import _MIXING_ACTIVATIONS

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
    mean and variance are running statistics (`statistics_weights`)."""

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
    channel (last) axis is not padded; otherwise the group freezes."""

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
    freezes. One operation per input element."""

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
    indices or on another axis freezes."""

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
    """Elementwise activations; softmax-like ones mix channels and freeze."""

    def propagate(self, layer, call, inputs, tracer):
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", str(activation))
        if name in _MIXING_ACTIVATIONS:
            return FreezeHandler(f"{name} mixes the channel axis").propagate(
                layer, call, inputs, tracer
            )
        return [inputs[0]]


class SoftmaxHandler(PassThroughHandler):
    def propagate(self, layer, call, inputs, tracer):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        shape = tracer.shape(call.inputs[0])
        if any(_is_last_axis(a, shape) for a in axis):
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
        if layer.axis == -1 or (shape is not None and layer.axis == len(shape) - 1):
            return [np.concatenate(inputs)]
        return MergeHandler().propagate(layer, call, inputs, tracer)


class FlattenHandler(LayerHandler):
    """Flatten of `(…, P positions, C)`: feature `p·C + c` carries channel `c`."""

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
    """ConvNeXt's per-channel `LayerScale` (its config stores the width)."""

    def prune_config(self, layer, config, n_out):
        return {**config, "projection_dim": int(n_out)}


_FREEZE_RESHAPE = FreezeHandler("reshapes the channel axis")


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
