"""The planner's cost model: parameters or MACs of a model as a function of which
channels are kept, from the graph's own walk and the handlers' rules."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from keras_filterprune.graph import ChannelGraph
from keras_filterprune.handlers import get_handler
from keras_filterprune.profile import call_macs

__all__ = ["cost_model"]


def cost_model(graph: ChannelGraph, target: str) -> Callable[[np.ndarray], float]:
    """Returns a function of element keep flags → estimated MACs or params.

    Each call site's cost (`graph.profile`, counted by the handlers) is scaled by
    the kept fraction of its weights, taken from the handlers' weight rules (the
    axes surgery slices): exact for parameters, and for MACs exact up to the bias
    of a layer (which only makes the estimate a little high, so a target is never
    exceeded). A product `in × out` fraction alone would miss a separable conv's
    depthwise part and the biases, which only follow one side. Layers without
    weights scale with their output channels (pooling, BatchNorm-free
    activations).

    Args:
        graph: The traced model.
        target: `"macs"` or `"params"`.
    """
    profile = graph.profile
    rows = []
    for call, lp in zip(graph.walk.calls, profile.layers, strict=True):
        base = lp.macs if target == "macs" else lp.params
        if not base:
            continue
        ins = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        outs = graph.tensor_ids.get(call.outputs[0])
        handler = get_handler(call.layer)
        parts = []
        weights = list(getattr(call.layer, "weights", ()))
        if handler is not None and weights:
            for w, rules in zip(weights, handler.weight_axes(call.layer)):
                axes = []
                for axis, src, _ in rules:
                    ids = ins if src == "in" else outs
                    if ids is not None and len(ids) and w.shape[axis] != 1:
                        axes.append(ids)
                parts.append((math.prod(w.shape), axes))
        rows.append((base, parts, outs))
    fixed = profile.total_params - sum(r[0] for r in rows) if target == "params" else 0

    def cost(flags: np.ndarray) -> float:
        total = float(fixed)
        for base, parts, outs in rows:
            if parts:
                size = sum(n for n, _ in parts)
                kept = sum(
                    n * math.prod(float(flags[ids].mean()) for ids in axes)
                    for n, axes in parts
                )
                frac = kept / size if size else 1.0
            elif outs is not None and len(outs):
                frac = float(flags[outs].mean())
            else:
                frac = 1.0
            total += base * frac
        return total

    return cost


def _with_width(shape, width: int | None):
    if shape is None or width is None:
        return shape
    return (*shape[:-1], width)


def pruned_macs(graph: ChannelGraph, flags: np.ndarray) -> int:
    """Exact MACs of the model `apply_plan` would build for these keep flags.

    Every call is counted by its handler's rule on the pruned shapes and, where
    the handler changes the layer's config (`filters`, `units`), on an unbuilt
    layer made from the pruned config: no model is rebuilt.

    Raises:
        ValueError: a shape a rule needs is unknown (see `profile_model`).
    """
    total = 0
    pruned_layers: dict[str, object] = {}
    shapes = dict(graph.walk.shapes)
    for key, ids in graph.tensor_ids.items():
        if ids is not None and key in shapes and shapes[key] is not None:
            shapes[key] = _with_width(shapes[key], int(flags[ids].sum()))
    for call in graph.walk.calls:
        handler = get_handler(call.layer)
        if handler is None:
            continue
        layer = call.layer
        outs = graph.tensor_ids.get(call.outputs[0]) if call.outputs else None
        if outs is not None and not flags[outs].all() and hasattr(layer, "get_config"):
            if call.path not in pruned_layers:
                config = layer.get_config()
                new = handler.prune_config(layer, config, int(flags[outs].sum()))
                pruned_layers[call.path] = (
                    layer if new == config else type(layer).from_config(new)
                )
            layer = pruned_layers[call.path]
        macs = call_macs(graph.walk, call, layer=layer, shapes=shapes)
        total += macs or 0
    return total
