"""Surgery: rebuild a model with physically fewer filters, as a plan says.

`apply_plan` never touches the model it is given: it edits a copy of the model's
config (widths, nested input shapes), rebuilds a new model from it and copies sliced
weights by layer path. Which weight axes follow which channels is the handlers'
knowledge (`keras_filterprune.handlers`); this module only executes it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import keras
import numpy as np

from keras_filterprune.graph import ChannelGraph, trace_channels
from keras_filterprune.handlers import get_handler
from keras_filterprune.plan import PruningPlan, plan_pruning

__all__ = ["apply_plan", "prune_keras_model", "mask_model", "weight_masks"]


# ---------------------------------------------------------------------------
# Matching a plan to a model
# ---------------------------------------------------------------------------


def _match(graph: ChannelGraph, plan: PruningPlan) -> dict[int, np.ndarray]:
    """Checks that `plan` fits the traced model; returns keep masks by group id."""
    if not isinstance(plan, PruningPlan):
        raise TypeError(
            "`plan` must be a keras_filterprune.PruningPlan (see plan_pruning or "
            f"PruningPlan.load). Received: plan of type {type(plan).__name__}."
        )
    by_producers = {frozenset(g.producers): g for g in plan.groups}
    plan_paths = {p for g in plan.groups for p in g.producers}
    for path in sorted(plan_paths):
        if path not in graph.walk.layers:
            raise ValueError(
                f"The plan does not match the model: it names layer '{path}', which "
                f"model '{graph.model_name}' does not have. Plans only apply to the "
                "model they were made for (or an identical copy)."
            )
    masks = {}
    for group in graph.groups:
        pg = by_producers.get(frozenset(group.producers))
        first = next(iter(group.producers))
        if pg is None:
            raise ValueError(
                f"The plan does not match the model: layer '{first}' of model "
                f"'{graph.model_name}' has no group in the plan (or its group has "
                "other members). Make a new plan for this model."
            )
        for path, channels in group.producers.items():
            if list(channels) != list(pg.producers[path]):
                raise ValueError(
                    f"The plan does not match the model: layer '{path}' has "
                    f"{len(channels)} filters in the model but "
                    f"{len(pg.producers[path])} in the plan (or another channel "
                    "layout). Make a new plan for this model."
                )
        mask = np.zeros(group.width, dtype=bool)
        mask[np.asarray(pg.keep, dtype=np.int64)] = True
        if group.frozen and not mask.all():
            raise ValueError(
                f"The plan removes channels of the group of layer '{first}', which "
                f"cannot be pruned in this model: {group.frozen}."
            )
        masks[group.id] = mask
    if len(masks) != len(plan.groups):
        raise ValueError(
            "The plan does not match the model: it has "
            f"{len(plan.groups)} groups, the model {len(masks)}."
        )
    return masks


def _check_rebuildable(graph: ChannelGraph) -> None:
    for path, layer in graph.walk.layers.items():
        if isinstance(layer, keras.layers.Lambda):
            raise ValueError(
                f"Layer '{path}' is a Lambda layer: Keras cannot rebuild it safely "
                "from its config (it holds Python bytecode). Replace it with a "
                "small registered custom layer (keras.saving."
                "register_keras_serializable), then prune."
            )


# ---------------------------------------------------------------------------
# Per-layer slices
# ---------------------------------------------------------------------------


def _layer_masks(graph: ChannelGraph, flags: np.ndarray) -> dict[str, tuple]:
    """Layer path → (in_keep, out_keep) boolean masks (or None)."""
    result = {}
    for path, call in graph.first_calls().items():
        ins = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        outs = graph.tensor_ids.get(call.outputs[0]) if call.outputs else None
        in_keep = None if ins is None else flags[ins]
        out_keep = None if outs is None else flags[outs]
        result[path] = (in_keep, out_keep)
    return result


def _rule_mask(src: str, repeat: int, in_keep, out_keep) -> np.ndarray | None:
    mask = in_keep if src == "in" else out_keep
    if mask is None:
        return None
    return np.repeat(mask, repeat) if repeat > 1 else mask


def _apply_rules(layer, weights: list, in_keep, out_keep, op: Callable) -> list:
    handler = get_handler(layer)
    if handler is None:
        return weights
    rules = handler.weight_axes(layer)
    out = []
    for i, (w, w_rules) in enumerate(zip(weights, rules)):
        for axis, src, repeat in w_rules:
            mask = _rule_mask(src, repeat, in_keep, out_keep)
            if mask is None or mask.all():
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


def _slice(w, axis, mask, i):
    return np.compress(mask, w, axis=axis)


# ---------------------------------------------------------------------------
# Rebuilding
# ---------------------------------------------------------------------------


def _layer_entries(config: dict, prefix: str = ""):
    """Yields (path, entry) for every layer entry of a model config, recursively."""
    for entry in config.get("layers", []):
        name = entry.get("name") or entry["config"]["name"]
        if "layers" in entry.get("config", {}):
            yield prefix + name, entry
            yield from _layer_entries(entry["config"], prefix + name + "/")
        else:
            yield prefix + name, entry


def _custom_objects(model: keras.Model) -> dict:
    """Users' own layer classes, so that unregistered ones rebuild too."""
    return {
        type(layer).__name__: type(layer)
        for layer in _all_layers(model)
        if not type(layer).__module__.startswith("keras.")
    }


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _rebuild(model, graph: ChannelGraph, configs: dict, input_widths: dict):
    config = copy.deepcopy(model.get_config())
    for path, entry in _layer_entries(config):
        entry.pop("build_config", None)
        if path in configs:
            entry["config"] = configs[path]
        if path in input_widths:
            _set_input_widths(entry["config"], input_widths[path])
    with keras.saving.custom_object_scope(_custom_objects(model)):
        return type(model).from_config(config)


def _set_input_widths(config: dict, widths: list[int]) -> None:
    """Sets the channel count of a nested model's inputs."""
    inputs = [e for e in config["layers"] if e["class_name"] == "InputLayer"]
    for entry, width in zip(inputs, widths):
        shape = list(entry["config"]["batch_shape"])
        shape[-1] = width
        entry["config"]["batch_shape"] = shape
    if "build_input_shape" in config and config["build_input_shape"] and widths:
        shape = list(config["build_input_shape"])
        shape[-1] = widths[0]
        config["build_input_shape"] = shape


def _get_by_path(model: keras.Model, path: str):
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def _layers_by_path(model: keras.Model, prefix: str = "", index=None) -> dict:
    """Every layer of `model` by path (`get_layer` is a linear scan: calling it for
    each of n layers is O(n²), seconds for NASNet)."""
    index = {} if index is None else index
    for layer in model.layers:
        index.setdefault(prefix + layer.name, layer)
        if isinstance(layer, keras.Model):
            _layers_by_path(layer, prefix + layer.name + "/", index)
    return index


def _set_weights(new_model: keras.Model, graph: ChannelGraph, weights: dict) -> None:
    """Sets every weighted layer of `new_model` from `weights[path]`, or from the
    same layer of the traced model when `weights` has no entry."""
    index = _layers_by_path(new_model)
    for path, layer in graph.walk.layers.items():
        if not getattr(layer, "weights", None):
            continue  # stateless layers and Keras ops
        values = weights.get(path)
        target = index.get(path) or _get_by_path(new_model, path)
        target.set_weights(layer.get_weights() if values is None else values)


def _keep_flags(model, plan) -> tuple[ChannelGraph, np.ndarray]:
    # trace_channels checks the model (subclassed, unbuilt) before anything else.
    graph = trace_channels(model, warn=False)
    masks = _match(graph, plan)
    _check_rebuildable(graph)
    return graph, graph.element_keep(masks)


def apply_plan(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """Builds a new model with the filters a plan removes physically gone.

    The input model is never modified. The new model has the same layer names,
    sliced weights, and is not compiled (compile it to fine-tune).

    Args:
        model: The built Functional or Sequential `keras.Model` the plan was made
            for (or an identical copy).
        plan: A `PruningPlan` from `plan_pruning` or `PruningPlan.load`.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: the plan does not fit the model (the message names the first
            mismatching layer), or the model holds a Lambda layer.
        TypeError: not a plan, or a subclassed model.

    Example:

    >>> import keras
    >>> from keras_filterprune import plan_pruning
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(8, 3, name="conv"), keras.layers.Flatten(),
    ...     keras.layers.Dense(2, name="head")])
    >>> pruned = apply_plan(model, plan_pruning(model, ratio=0.5))
    >>> pruned.get_layer("conv").filters, model.get_layer("conv").filters
    (4, 8)
    """
    graph, flags = _keep_flags(model, plan)
    masks = _layer_masks(graph, flags)
    configs, weights = {}, {}
    for path, layer in graph.walk.layers.items():
        in_keep, out_keep = masks[path]
        handler = get_handler(layer)
        if handler is None:
            continue
        if getattr(layer, "weights", None):
            weights[path] = _apply_rules(
                layer, layer.get_weights(), in_keep, out_keep, _slice
            )
        if out_keep is not None and not out_keep.all():
            config = layer.get_config()
            new_config = handler.prune_config(layer, config, int(out_keep.sum()))
            if new_config != config:
                configs[path] = new_config
    input_widths = {
        path: [int(flags[graph.tensor_ids[k]].sum()) for k in keys]
        for path, keys in graph.walk.model_inputs.items()
        if all(graph.tensor_ids.get(k) is not None for k in keys)
    }
    new_model = _rebuild(model, graph, configs, input_widths)
    _set_weights(new_model, graph, weights)
    return new_model


def prune_keras_model(
    model: keras.Model,
    ratio: float = 0.5,
    criterion: str | Callable = "operator_norm",
    **plan_kwargs,
) -> keras.Model:
    """Plans and applies filter pruning in one call.

    Equivalent to `apply_plan(model, plan_pruning(model, ratio, criterion, ...))`.

    Args:
        model: A built Functional or Sequential `keras.Model` (never modified).
        ratio: `float` in [0, 1). Fraction of each group's channels to remove.
        criterion: `str` or callable. See `keras_filterprune.criteria`.
        **plan_kwargs: Any other argument of `plan_pruning` (`per_layer`,
            `exclude`, `target_macs`, `round_to`, `data`, …).

    Returns:
        A new, smaller `keras.Model`.

    Example:

    >>> import keras
    >>> inputs = keras.Input((16, 16, 3))
    >>> x = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(10, name="head")(x))
    >>> prune_keras_model(model, ratio=0.75).get_layer("conv").filters
    4
    """
    return apply_plan(model, plan_pruning(model, ratio, criterion, **plan_kwargs))


# ---------------------------------------------------------------------------
# Masks: the same decisions without changing shapes
# ---------------------------------------------------------------------------


def weight_masks(model: keras.Model, plan: PruningPlan) -> dict[str, list]:
    """0/1 masks of the weights that carry removed channels.

    For every layer path, one mask per weight of `layer.weights` (`None` when the
    weight is untouched), broadcastable to the weight. Multiplying the weights by
    them zeroes the removed filters (kernels, biases, BatchNorm gamma/beta,
    depthwise slices) and the input rows that consume removed channels, so the
    masked model computes exactly what `apply_plan` would build. BatchNorm running
    statistics are left alone (a zero gamma/beta already silences the channel).

    Args:
        model: The model the plan was made for.
        plan: A `PruningPlan`.

    Returns:
        `dict[str, list[np.ndarray | None]]`.
    """
    return _weight_masks(*_keep_flags(model, plan))


def _weight_masks(graph: ChannelGraph, flags: np.ndarray) -> dict[str, list]:
    masks = _layer_masks(graph, flags)
    result = {}
    for path, layer in graph.walk.layers.items():
        variables = list(getattr(layer, "weights", ()))
        if not variables:
            continue
        in_keep, out_keep = masks[path]
        ones = [np.ones(v.shape, dtype=np.float32) for v in variables]

        def zero(w, axis, mask, i, variables=variables):
            if variables[i].name.startswith("moving_"):
                return w  # running statistics: keep them for regrowing channels
            shape = [1] * w.ndim
            shape[axis] = len(mask)
            return w * mask.reshape(shape).astype(w.dtype)

        out = _apply_rules(layer, ones, in_keep, out_keep, zero)
        entry = [None if np.all(m == 1) else m for m in out]
        if any(m is not None for m in entry):
            result[path] = entry
    return result


def mask_model(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """A copy of `model` with the plan's removed channels zeroed, shapes unchanged.

    Its outputs equal those of `apply_plan(model, plan)`: this is the oracle the
    surgery is tested against, and what `PruningCallback` trains with.

    Args:
        model: The model the plan was made for (never modified).
        plan: A `PruningPlan`.

    Returns:
        A new `keras.Model` of the same architecture.
    """
    graph, flags = _keep_flags(model, plan)
    weights = {}
    for path, masks in _weight_masks(graph, flags).items():
        values = graph.walk.layers[path].get_weights()
        weights[path] = [v if m is None else v * m for v, m in zip(values, masks)]
    clone = _rebuild(model, graph, {}, {})
    _set_weights(clone, graph, weights)
    return clone
