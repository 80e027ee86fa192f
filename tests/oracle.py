"""The oracle the surgery is tested against, and what it needs.

A pruned model must compute what the original computes once the removed channels
stop counting. Two independent ways to build that reference:

* `keras_filterprune.mask_model` (the library's own: every weight that carries a
  removed channel is zeroed, shapes unchanged);
* `zero_consumers` here, which knows nothing of the library's handlers: the test
  names, per case, which kernel rows of which consuming layer read removed channels
  (written out by hand from the test graph), and this module zeroes exactly those.

Both must match `apply_plan(model, plan)(x)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import keras
import numpy as np

L = keras.layers


# ---------------------------------------------------------------------------
# Making weights non-trivial
# ---------------------------------------------------------------------------


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Gives every weight of `model` random, non-trivial values (in place).

    Kernels get scaled normal values; BatchNormalization gets random gamma, beta,
    moving mean and moving variance; every other weight (biases, PReLU alpha,
    custom per-channel scales) gets random values, so that a removed channel
    always leaves a visible trace unless it is removed correctly.
    """
    rng = np.random.default_rng(seed)
    for layer in _layers(model):
        for v in layer.weights:
            shape = tuple(v.shape)
            name = v.path.split("/")[-1]
            if name == "moving_variance":
                value = rng.uniform(0.5, 2.0, shape)
            elif name == "gamma":
                value = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
            elif len(shape) >= 2 and "kernel" in name:
                fan_in = int(np.prod(shape[:-1])) or 1
                value = rng.normal(0.0, 1.5 / np.sqrt(fan_in), shape)
            else:  # beta, moving_mean, biases, alpha, custom scales
                value = rng.normal(0.0, 0.5, shape)
            v.assign(value.astype(v.dtype))
    return model


def calibrate(model: keras.Model, x: np.ndarray, seed: int = 0) -> keras.Model:
    """Random BatchNormalization gamma/beta, statistics measured on `x` (in place).

    Deep applications models built with `weights=None` have activations that
    vanish (1e-20) or explode layer after layer, which makes any tolerance
    meaningless, and statistics perturbed after the fact compound over 50 layers
    (1e7 outputs). So gamma and beta are drawn at random first, then one
    training-mode pass over `x` with momentum 0 sets every moving mean and
    variance to the statistics its layer sees: on `x` the model in inference mode
    then computes the training-mode function, whose activations are O(1), with
    non-trivial (data-derived, non 0/1) statistics. Models without
    BatchNormalization (VGG) get He-normal kernels instead. Per-channel
    `LayerScale` weights (ConvNeXt, initialised to 1e-6) get random O(1) values.
    """
    rng = np.random.default_rng(seed)
    layers = list(_layers(model))
    bns = [layer for layer in layers if isinstance(layer, L.BatchNormalization)]
    if not bns:
        for layer in layers:
            if isinstance(layer, (L.Conv2D, L.Dense)):
                shape = tuple(layer.kernel.shape)
                std = np.sqrt(2.0 / np.prod(shape[:-1]))
                layer.kernel.assign(rng.normal(0, std, shape).astype("float32"))
    for layer in layers:
        if type(layer).__name__ == "LayerScale":
            for v in layer.weights:
                v.assign(rng.uniform(0.3, 1.0, tuple(v.shape)).astype(v.dtype))
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
        c = bn.moving_mean.shape[0]
        if bn.gamma is not None:
            bn.gamma.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
        if bn.beta is not None:
            bn.beta.assign(rng.normal(0.0, 0.3, c).astype("float32"))
    try:
        model(x, training=True)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
    return model


# ---------------------------------------------------------------------------
# Snapshots ("nothing lost")
# ---------------------------------------------------------------------------


def snapshot(model: keras.Model) -> tuple[list[bytes], str]:
    """Byte-exact weights (every variable, by path) and the JSON config."""
    weights = [
        (v.path, np.array(v.numpy(), copy=True).tobytes()) for v in model.weights
    ]
    config = json.dumps(model.get_config(), sort_keys=True, default=str)
    return weights, config


def assert_untouched(model: keras.Model, before) -> None:
    after = snapshot(model)
    assert [p for p, _ in after[0]] == [p for p, _ in before[0]], "variables changed"
    for (path, a), (_, b) in zip(after[0], before[0]):
        assert a == b, f"weight {path} of the input model changed"
    assert after[1] == before[1], "the input model's config changed"


# ---------------------------------------------------------------------------
# The independent reference: zero the kernel rows that read removed channels
# ---------------------------------------------------------------------------


def removed(plan, producer: str) -> np.ndarray:
    """Filters of `producer` that the plan removes (sorted)."""
    group = plan.group_of(producer)
    kept = set(plan.kept_filters(producer))
    return np.array(
        [j for j in range(len(group.producers[producer])) if j not in kept], dtype=int
    )


def flat_rows(channels: Iterable[int], n_channels: int, positions: int) -> np.ndarray:
    """Flatten of `(…, P, C)`: channel `c` is read at rows `p·C + c`."""
    channels = np.asarray(list(channels), dtype=int)
    return np.array(
        [p * n_channels + c for p in range(positions) for c in channels], dtype=int
    )


def repeat_rows(channels: Iterable[int], multiplier: int) -> np.ndarray:
    """Depthwise multiplier `m`: channel `c` becomes channels `c·m … c·m + m − 1`."""
    channels = np.asarray(list(channels), dtype=int)
    return np.array([c * multiplier + j for c in channels for j in range(multiplier)])


def copy_model(model: keras.Model) -> keras.Model:
    """An independent copy (same config, same weight values)."""
    custom = {type(layer).__name__: type(layer) for layer in _layers(model)}
    with keras.saving.custom_object_scope(custom):
        clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def layers_by_path(model: keras.Model, prefix: str = "") -> dict:
    """Every layer by path (`"nested/layer"` inside nested models)."""
    index = {}
    for layer in model.layers:
        index[prefix + layer.name] = layer
        if isinstance(layer, keras.Model):
            index.update(layers_by_path(layer, prefix + layer.name + "/"))
    return index


def _get(model: keras.Model, path: str):
    obj = model
    for part in path.split("/"):
        obj = obj.get_layer(part)
    return obj


def zero_consumers(model: keras.Model, rows: Mapping[str, Iterable[int]]):
    """A copy of `model` whose consuming layers ignore the given input channels.

    Args:
        model: The original model (not modified).
        rows: consumer layer path → indices of its *input* channels to ignore.
            Conv/Dense: kernel rows (axis -2); Conv*Transpose: axis -1;
            SeparableConv: rows of the pointwise kernel (already multiplied out
            by the depth multiplier by the caller).
    """
    clone = copy_model(model)
    for path, idx in rows.items():
        idx = np.asarray(list(idx), dtype=int)
        if idx.size == 0:
            continue
        layer = _get(clone, path)
        if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
            var, axis = layer.pointwise_kernel, -2
        elif isinstance(
            layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
        ):
            var, axis = layer.kernel, -1
        elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D, L.Dense)):
            var, axis = layer.kernel, -2
        else:
            raise TypeError(f"{path}: not a consumer the oracle knows")
        value = var.numpy()
        index = [slice(None)] * value.ndim
        index[axis] = idx
        value[tuple(index)] = 0.0
        var.assign(value)
    return clone


def outputs(model: keras.Model, x) -> list[np.ndarray]:
    out = keras.tree.flatten(model(x, training=False))  # a dict of outputs too
    return [np.asarray(keras.ops.convert_to_numpy(o), dtype=np.float64) for o in out]


def assert_close(a: list, b: list, rtol: float = 1e-4, what: str = "") -> float:
    """Max |a − b| ≤ rtol · output scale (max |b|, at least 1e-3); returns the
    worst error relative to the scale."""
    worst = 0.0
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape, f"{what} output {i}: {u.shape} vs {v.shape}"
        scale = max(1e-3, float(np.max(np.abs(v))))
        err = float(np.max(np.abs(u - v)))
        assert err <= rtol * scale, (
            f"{what} output {i}: max |diff| {err:.3g} > {rtol:g} x scale {scale:.3g}"
        )
        worst = max(worst, err / scale)
    return worst


def assert_differs(a: list, b: list, what: str = "") -> None:
    """At least one output moved by more than noise (so the oracle can fail)."""
    gaps = []
    for u, v in zip(a, b):
        scale = max(1e-6, float(np.max(np.abs(v))))
        gaps.append(float(np.max(np.abs(u - v))) / scale)
    assert max(gaps) > 1e-3, f"{what}: pruning did not change the outputs ({gaps})"


# ---------------------------------------------------------------------------
# The "dead channels" reference: no slicing rule at all
# ---------------------------------------------------------------------------


class _DeadChannels(L.Layer):
    """Calls a layer, then multiplies its output channels by a 0/1 mask."""

    def __init__(self, inner, mask, **kwargs):
        super().__init__(name=f"{inner.name}_dead", **kwargs)
        self.inner = inner
        self.keep = np.asarray(mask, dtype="float32")

    def call(self, inputs, mask=None, training=None):
        outputs = self.inner(inputs)  # `training` reaches it by context
        return outputs * keras.ops.convert_to_tensor(self.keep, outputs.dtype)

    def compute_output_spec(self, inputs, mask=None, training=None):
        return self.inner.compute_output_spec(inputs)

    def compute_output_shape(self, input_shape):  # composite layers may ask
        return self.inner.compute_output_shape(input_shape)


def _copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Layer by layer: a task rebuilt by `clone_model` may order (or count) its
    flat weight list differently, its layers pair one to one."""
    for a, b in zip(source.layers, target.layers, strict=True):
        if isinstance(a, keras.Model):
            _copy_weights(a, b)
        elif a.weights:
            b.set_weights(a.get_weights())


def dead_channels_model(model: keras.Model, plan) -> keras.Model:
    """The original model with the plan's removed channels exactly zero, from the
    producer that makes them to every consumer that reads them.

    A copy of `model` (same weights) is cloned so that every layer whose output
    carries removed channels multiplies that output by a 0/1 channel mask. Which
    channels of which tensor a plan removes comes from the traced channel graph;
    no weight is sliced or zeroed, so this reference shares nothing with the
    surgery's (or the masks') per-layer slicing rules: zeros propagate through
    Flatten, depthwise multipliers, concatenations and merges by the model's own
    arithmetic. The pruned model must compute exactly what this one computes.
    """
    from keras_filterprune.graph import trace_channels

    copy = keras.models.clone_model(model, recursive=True)  # never call its layers
    _copy_weights(model, copy)
    graph = trace_channels(copy, warn=False)
    flags = graph.element_keep(plan.keep_masks())
    masks: dict[str, np.ndarray | None] = {}
    for call in graph.walk.calls:
        if len(call.outputs) != 1:
            continue
        ids = graph.tensor_ids.get(call.outputs[0])
        mask = None if ids is None else flags[ids].astype("float32")
        if call.path in masks:  # a shared layer: mask only if every call agrees
            old = masks[call.path]
            if old is None or mask is None or not np.array_equal(old, mask):
                masks[call.path] = None
            continue
        masks[call.path] = mask
    # Keras ops of the graph (`x + 3.0`) are not layers: their outputs are masked
    # again by the next layer, before any consumer mixes channels.
    by_id = {
        id(layer): masks.get(path)
        for path, layer in graph.walk.layers.items()
        if isinstance(layer, L.Layer)
    }

    def clone(layer):
        mask = by_id.get(id(layer))
        if mask is None or mask.all():
            return layer
        return _DeadChannels(layer, mask)

    # Layers inside composite layers (traced inside) are called by their owner's
    # `call` through its attributes: wrap them there, in the copy.
    def wrap(value):
        if isinstance(value, keras.Model):  # its own layers wrapped
            return keras.models.clone_model(value, clone_function=clone, recursive=True)
        if isinstance(value, L.Layer):
            return clone(value)
        if isinstance(value, (list, tuple)):
            return [wrap(v) for v in value]
        if isinstance(value, dict):
            return {k: wrap(v) for k, v in value.items()}
        return value

    for composite in graph.walk.composites.values():
        # On PyTorch, sub-layers live in the module's `_modules`, not `vars()`.
        modules = getattr(composite, "_modules", None) or {}
        for attribute, value in [*vars(composite).items(), *modules.items()]:
            if attribute.startswith("_"):
                continue
            if attribute in modules:
                modules[attribute] = wrap(value)
            else:
                object.__setattr__(composite, attribute, wrap(value))
    return keras.models.clone_model(copy, clone_function=clone, recursive=True)
