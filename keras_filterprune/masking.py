"""Masks: a plan's decisions without changing shapes.

`weight_masks` and `mask_model` zero what `apply_plan` would remove (the masked
model computes exactly what the pruned one does); `VariableMasks` keeps the model's
variables, and the optimizer slots that track them, masked while `fit` runs
(`PruningCallback` in hard mode); `recover_plan` reads such a model's plan back
from its zeroed weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import keras
import numpy as np

from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._paths import layer_by_path
from keras_filterprune._rebuild import check_rebuildable, rebuild, set_weights
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import ChannelGraph, graph_of
from keras_filterprune.handlers import get_handler
from keras_filterprune.pruning_plan import GroupPlan, PruningPlan, check_plan
from keras_filterprune.scoring import sliced_kernel

__all__ = [
    "hold_masks",
    "weight_masks",
    "mask_model",
    "layer_masks",
    "recover_plan",
    "VariableMasks",
]


def layer_masks(graph: ChannelGraph, flags: np.ndarray) -> dict[str, tuple]:
    """Layer path → (in_keep, out_keep) boolean masks (or None)."""
    result = {}
    for path, call in graph.first_calls().items():
        ins = graph.tensor_ids.get(call.inputs[0]) if call.inputs else None
        outs = graph.tensor_ids.get(call.outputs[0]) if call.outputs else None
        in_keep = None if ins is None else flags[ins]
        out_keep = None if outs is None else flags[outs]
        result[path] = (in_keep, out_keep)
    return result


def graph_masks(graph: ChannelGraph, flags: np.ndarray) -> dict[str, list]:
    """`weight_masks` of a traced graph and element keep flags."""
    masks = layer_masks(graph, flags)
    result = {}
    for path, layer in graph.walk.layers.items():
        variables = list(getattr(layer, "weights", ()))
        handler = get_handler(layer)
        if not variables or handler is None:
            continue
        in_keep, out_keep = masks[path]
        ones = [np.ones(v.shape, dtype=np.float32) for v in variables]
        statistics = {
            id(getattr(layer, name)) for name in handler.statistics_weights(layer)
        }

        def zero(w, axis, mask, i, variables=variables, statistics=statistics):
            if id(variables[i]) in statistics:
                return w  # running statistics: keep them for regrowing channels
            shape = [1] * w.ndim
            shape[axis] = len(mask)
            return w * mask.reshape(shape).astype(w.dtype)

        out = handler.map_weights(layer, ones, in_keep, out_keep, zero)
        entry = [None if np.all(m == 1) else m for m in out]
        if any(m is not None for m in entry):
            result[path] = entry
    return result


@graph_argument_removed
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

    Example:

    >>> import keras
    >>> from keras_filterprune import plan_pruning
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
    ...     keras.layers.Dense(2, name="head")])
    >>> masks = weight_masks(model, plan_pruning(model, ratio=0.5))
    >>> kernel_mask, bias_mask = masks["conv"]
    >>> kernel_mask.shape, int(bias_mask.sum())  # 2 of the 4 filters kept
    ((3, 3, 3, 4), 2)
    """
    check_plan(plan)
    graph = graph_of(model)
    return graph_masks(graph, plan.keep_flags(graph))


@graph_argument_removed
def mask_model(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """A copy of `model` with the plan's removed channels zeroed, shapes unchanged.

    Its outputs equal those of `apply_plan(model, plan)`: this is one of the
    oracles the surgery is tested against, and what `PruningCallback` trains with.

    Args:
        model: The model the plan was made for (never modified).
        plan: A `PruningPlan`.

    Returns:
        A new `keras.Model` of the same architecture.

    Example:

    >>> import keras, numpy as np
    >>> from keras_filterprune import apply_plan, plan_pruning
    >>> model = keras.Sequential([keras.Input((8, 8, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
    ...     keras.layers.Dense(2, name="head")])
    >>> plan = plan_pruning(model, ratio=0.5)
    >>> masked = mask_model(model, plan)
    >>> masked.get_layer("conv").filters  # the same shapes, two filters zero
    4
    >>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
    >>> bool(np.allclose(masked(x), apply_plan(model, plan)(x), atol=1e-5))
    True
    """
    check_plan(plan)
    graph = graph_of(model)
    flags = plan.keep_flags(graph)
    check_rebuildable(graph)
    weights = {}
    for path, masks in graph_masks(graph, flags).items():
        values = graph.walk.layers[path].get_weights()
        weights[path] = [v if m is None else v * m for v, m in zip(values, masks)]
    clone = rebuild(model, {}, {})
    set_weights(clone, graph, weights)
    return clone


# ---------------------------------------------------------------------------
# Masking variables (and optimizer slots) during fit
# ---------------------------------------------------------------------------


def slot_variables(model: keras.Model) -> tuple[dict[int, list], list[str]]:
    """Model variable id → the optimizer variables that track it elementwise.

    Keras 3 optimizers name the variables they create for a model variable
    `{variable.path with "/" → "_"}_{slot}` (`add_variable_from_reference`), and
    `optimizer.variables` (public) lists them all, those of a wrapped optimizer
    (`LossScaleOptimizer`) included. A slot is matched to the model variable with
    the longest such prefix and the same shape. Returns the map and the paths
    whose prefix is ambiguous (their slots are left alone).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return {}, []
    by_key: dict[str, list] = {}
    for v in model.trainable_variables:
        by_key.setdefault(v.path.replace("/", "_"), []).append(v)
    ambiguous = sorted(k for k, vs in by_key.items() if len(vs) > 1)
    result: dict[int, list] = {}
    for slot in optimizer.variables:
        parts = str(slot.name).split("_")
        for cut in range(len(parts) - 1, 0, -1):
            owners = by_key.get("_".join(parts[:cut]))
            if owners is None:
                continue
            if len(owners) == 1 and tuple(owners[0].shape) == tuple(slot.shape):
                result.setdefault(id(owners[0]), []).append(slot)
            break
    return result, ambiguous


def _masker(pairs: tuple) -> Callable[[], None]:
    """A function multiplying each variable by its mask: one compiled call on the
    TensorFlow backend (one op per variable per batch would cost more than a
    small model's training step), a plain loop elsewhere."""

    def apply() -> None:
        for variable, mask in pairs:
            variable.assign(variable * mask)

    if not pairs:
        return lambda: None
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(apply, autograph=False)
    return apply


class _MaskConstraint:
    """A variable constraint that multiplies by a mask after each optimizer step
    (and applies the variable's own constraint first)."""

    def __init__(self, mask, inner=None) -> None:
        self.mask, self.inner = mask, inner

    def __call__(self, value):
        return (value if self.inner is None else self.inner(value)) * self.mask


class VariableMasks:
    """Multiplies a model's variables (and optionally their optimizer slots) by
    a plan's masks.

    Args:
        model: The model being trained.
        masks: `weight_masks` of the model and the plan.
        slots: `bool`. Mask the optimizer slots too (Adam moments, momentum, …),
            so that they do not push zeroed weights back. Defaults to `False`.
    """

    def __init__(self, model: keras.Model, masks: dict, slots: bool = False):
        pairs, unmatched, weights = [], [], []
        slot_map: dict[int, list] = {}
        ambiguous: list[str] = []
        optimizer = getattr(model, "optimizer", None)
        #: Whether every slot could be matched (the optimizer is built).
        self.complete = True
        if slots and optimizer is not None:
            slot_map, ambiguous = slot_variables(model)
            self.complete = bool(optimizer.built)
        for path, layer_masks_ in masks.items():
            layer = layer_by_path(model, path)
            for variable, mask in zip(layer.weights, layer_masks_):
                if mask is None:
                    continue
                tensor = keras.ops.convert_to_tensor(mask, dtype=variable.dtype)
                pairs.append((variable, tensor))
                if variable.trainable:
                    weights.append((variable, tensor))
                for slot in slot_map.get(id(variable), ()):
                    pairs.append(
                        (slot, keras.ops.convert_to_tensor(mask, dtype=slot.dtype))
                    )
                if variable.path.replace("/", "_") in ambiguous:
                    unmatched.append(variable.path)
        if unmatched:
            warnings.warn(
                "The optimizer slots of these weights cannot be told apart by name "
                f"(their paths collide), so they are not masked: {unmatched[:5]}. "
                "The masked weights themselves are still zeroed after every batch.",
                FilterPruneWarning,
                stacklevel=3,
            )
        self._apply = _masker(tuple(pairs))
        self._weights = weights
        self._held: list = []

    def __call__(self) -> None:
        """Multiplies the variables (and slots) by their masks, now."""
        self._apply()

    def hold(self) -> None:
        """Keeps the trainable masked weights at zero after every optimizer step,
        on every backend, with a variable constraint (the mechanism Keras'
        optimizers apply inside the compiled train step: an `assign` from a
        callback is not seen by the JAX trainer until the epoch ends). The train
        function must be rebuilt for it to take effect (`make_train_function`)."""
        if self._held:
            return
        for variable, mask in self._weights:
            self._held.append((variable, variable.constraint))
            variable.constraint = _MaskConstraint(mask, variable.constraint)

    def release(self) -> None:
        """Gives the variables back their own constraints."""
        for variable, constraint in self._held:
            variable.constraint = constraint
        self._held = []


def hold_masks(model, held: VariableMasks | None, masks: VariableMasks | None):
    """Releases the constraints of `held`, holds `masks` (if any) and, when
    `model` is given, rebuilds its train function, which reads variable
    constraints when it is traced. Returns `masks`: what is now held."""
    if held is not None:
        held.release()
    if masks is not None:
        masks.hold()
    if model is not None:
        model.make_train_function(force=True)
    return masks


@graph_argument_removed
def recover_plan(
    model: keras.Model,
    *,
    exclude: Iterable[str] | None = None,
) -> PruningPlan | None:
    """The plan whose removed filters are exactly zero in `model`.

    Hard-mode pruning resumed from a checkpoint (`BackupAndRestore`) finds its
    plan again this way. A filter counts as removed only if every weight the
    plan's masks would zero is exactly zero (kernel, bias, BatchNorm beta, …).

    Args:
        model: A model trained with hard-mode masks.
        exclude: Layer names whose groups stay whole.

    Returns:
        A `PruningPlan`, or `None` when no filter is zero.
    """
    graph = graph_of(model)
    frozen = {g.id: g.frozen for g in graph.groups if g.frozen}
    for g, reason in graph.exclusions(exclude).items():
        frozen.setdefault(g, reason)
    groups, removed = [], 0
    for g in graph.groups:
        keep = list(range(g.width))
        if g.id not in frozen:
            zero = np.ones(g.width, dtype=bool)
            for path, channels in g.producers.items():
                kernel = sliced_kernel(graph, path)
                flat = kernel.reshape(-1, kernel.shape[-1])
                zero[np.asarray(channels)[np.any(flat != 0, axis=0)]] = False
            keep = [c for c in range(g.width) if not zero[c]] or [0]
        removed += g.width - len(keep)
        groups.append(
            GroupPlan(
                id=g.id,
                width=g.width,
                producers={p: c.tolist() for p, c in g.producers.items()},
                members=list(g.members),
                keep=keep,
                frozen=frozen.get(g.id),
            )
        )
    if not removed:
        return None
    plan = PruningPlan(groups, model.name, {"recovered": True})
    # Only trust it if every masked weight is zero (bias, BN beta, … included).
    for path, masks in graph_masks(graph, plan.keep_flags(graph)).items():
        for variable, mask in zip(graph.walk.layers[path].weights, masks):
            if mask is None:
                continue
            value = keras.ops.convert_to_numpy(variable)
            if np.any(value * (1 - mask) != 0):
                return None
    return plan
