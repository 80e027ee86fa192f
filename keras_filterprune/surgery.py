"""Surgery: rebuild a model with physically fewer filters, as a plan says.

`apply_plan` never touches the model it is given: it edits a copy of the model's
config (widths, nested input shapes), rebuilds a new model from it and copies sliced
weights by layer path. Which weight axes follow which channels is the handlers'
knowledge (`keras_filterprune.handlers`); this module only executes it.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._inner import layer_config
from keras_filterprune._rebuild import check_rebuildable, rebuild, set_weights
from keras_filterprune.graph import graph_of
from keras_filterprune.handlers import get_handler
from keras_filterprune.masking import layer_masks, mask_model, weight_masks
from keras_filterprune.plan import plan_pruning
from keras_filterprune.pruning_plan import PruningPlan, check_plan
from keras_filterprune.recovery import recalibrate_batchnorm

__all__ = ["apply_plan", "prune_keras_model", "mask_model", "weight_masks"]


def _slice(w, axis, mask, i):
    return np.compress(mask, w, axis=axis)


@graph_argument_removed
def apply_plan(
    model: keras.Model,
    plan: PruningPlan,
    *,
    calibration_data=None,
) -> keras.Model:
    """Builds a new model with the filters a plan removes physically gone.

    The input model is never modified. The new model has the same layer names,
    sliced weights, and is not compiled (compile it to fine-tune).

    Args:
        model: The built Functional or Sequential `keras.Model` the plan was made
            for (or an identical copy).
        plan: A `PruningPlan` from `plan_pruning` or `PruningPlan.load`.
        calibration_data: Unlabeled inputs to re-estimate the pruned model's
            BatchNorm statistics with (`recalibrate_batchnorm`; a few hundred
            examples). Without it the pruned model keeps the original
            statistics, which no longer match its inputs: recalibrate or
            fine-tune before judging its accuracy. Defaults to `None`.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: the plan does not fit the model (the message names the first
            mismatching layer), or the model holds a Lambda layer.
        TypeError: not a plan, or a subclassed model whose `call()` cannot be
            traced.

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
    check_plan(plan)
    # graph_of checks the model (subclassed, unbuilt) before anything else.
    graph = graph_of(model)
    flags = plan.keep_flags(graph)
    check_rebuildable(graph)
    masks = layer_masks(graph, flags)
    configs, weights = {}, {}
    for path, layer in graph.walk.layers.items():
        in_keep, out_keep = masks[path]
        handler = get_handler(layer)
        if handler is None:
            continue
        if getattr(layer, "weights", None):
            weights[path] = handler.map_weights(
                layer, layer.get_weights(), in_keep, out_keep, _slice
            )
        if out_keep is not None and not out_keep.all():
            config = layer_config(layer)
            new_config = handler.prune_config(layer, config, int(out_keep.sum()))
            if new_config != config:
                configs[path] = new_config
    input_widths = {}  # nested models and composite layers whose inputs shrink
    for path, keys in graph.walk.model_inputs.items():
        if all(graph.tensor_ids.get(k) is not None for k in keys):
            widths = [int(flags[graph.tensor_ids[k]].sum()) for k in keys]
            if widths != [len(graph.tensor_ids[k]) for k in keys]:
                input_widths[path] = widths
    new_model = rebuild(model, configs, input_widths)
    set_weights(new_model, graph, weights)
    if calibration_data is not None:
        recalibrate_batchnorm(new_model, calibration_data)
    return new_model


def prune_keras_model(
    model: keras.Model,
    ratio: float = 0.5,
    criterion: str | Callable = "operator_norm",
    *,
    calibration_data=None,
    **plan_kwargs,
) -> keras.Model:
    """Plans and applies filter pruning in one call.

    Equivalent to `apply_plan(model, plan_pruning(model, ratio, criterion, ...))`;
    the model is traced once.

    Args:
        model: A built Functional or Sequential `keras.Model` (never modified).
        ratio: `float` in [0, 1). Fraction of each group's channels to remove.
        criterion: `str` or callable. See `keras_filterprune.criteria`.
        calibration_data: Unlabeled inputs to recalibrate the pruned model's
            BatchNorm statistics with (see `apply_plan`). Defaults to `None`.
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
    plan = plan_pruning(model, ratio, criterion, **plan_kwargs)
    return apply_plan(model, plan, calibration_data=calibration_data)
