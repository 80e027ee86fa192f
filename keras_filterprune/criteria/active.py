"""Active importance criteria: statistics of a layer's output activations.

An active criterion is a per-batch statistic
`fn(activations, gradients=None) -> np.ndarray` of shape `(C,)`: `activations` (and
`gradients`, the gradient of the loss with respect to them, for criteria that need
it) are NumPy arrays shaped `(B, *spatial, C)`, channels last, and the result is the
statistic's mean over the `B` examples of the batch. `gather_active_scores` runs data
through a model, calls the statistic on every batch and combines the batches by
their mean weighted by batch size, so the result is the mean over all examples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_filterprune.criteria import _registry as registry
from keras_filterprune.criteria._gradients import GradientExtractor

__all__ = ["mean_activation", "apoz", "hrank", "taylor", "gather_active_scores"]


def _as_activations(array: Any, name: str = "activations") -> np.ndarray:
    """Returns `array` as a NumPy array of rank >= 2 without NaN or Inf."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf" and array.dtype.kind != "V":
        raise TypeError(
            f"`{name}` must be a real numeric array. Received: dtype={array.dtype}"
        )
    if array.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (batch, *spatial, channels). "
            f"Received: shape={array.shape}"
        )
    if array.dtype.kind == "V" or array.dtype.itemsize < 4:
        array = array.astype(np.float32)  # float16 / bfloat16: compute in float32+
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(
            f"`{name}` contain NaN or Inf; check the model and the data "
            f"(shape={array.shape})."
        )
    return array


def _flat(array: np.ndarray) -> np.ndarray:
    """Views `(B, *spatial, C)` as `(B, M, C)`, `M` spatial positions (1: Dense)."""
    return array.reshape(array.shape[0], -1, array.shape[-1])


def mean_activation(
    activations: np.ndarray, gradients: np.ndarray | None = None
) -> np.ndarray:
    """Mean absolute activation of each channel.

    `s_c = mean over examples and positions of |a[..., c]|`. Channels whose output
    stays small contribute little to the next layer.

    Args:
        activations: Array of shape `(B, *spatial, C)` (channels last).
        gradients: Unused; accepted for the common signature. Defaults to `None`.

    Returns:
        Float64 array of shape `(C,)`: the batch mean. Higher means more important.

    Raises:
        ValueError: If `activations` has rank < 2 or contains NaN or Inf.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> a = np.array([[[1.0, -2.0], [3.0, 0.0]]])  # (B=1, positions=2, C=2)
    >>> criteria.mean_activation(a)
    array([2., 1.])

    References:
        The mean-activation baseline of Molchanov, Tyree, Karras, Aila & Kautz,
        "Pruning Convolutional Neural Networks for Resource Efficient Inference",
        ICLR 2017.
    """
    a = _as_activations(activations)
    flat = a.reshape(-1, a.shape[-1])
    return np.mean(np.abs(flat), axis=0, dtype=np.float64)


def apoz(activations: np.ndarray, gradients: np.ndarray | None = None) -> np.ndarray:
    """One minus the Average Percentage of Zeros (APoZ) of each channel after ReLU.

    `s_c = 1 − mean over examples and positions of [max(a[..., c], 0) == 0]`, i.e.
    the fraction of positive activations, in `[0, 1]`. The zeros are counted after a
    ReLU, so the criterion also applies to layers whose activation is separate (a
    `Conv2D` followed by `ReLU`) or has none. A channel that is almost always zero
    (high APoZ, low score) is the least important.

    Args:
        activations: Array of shape `(B, *spatial, C)` (channels last).
        gradients: Unused; accepted for the common signature. Defaults to `None`.

    Returns:
        Float64 array of shape `(C,)`: the batch mean. Higher means more important.

    Raises:
        ValueError: If `activations` has rank < 2 or contains NaN or Inf.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> a = np.array([[[1.0, -2.0], [3.0, 0.0], [-1.0, 0.5], [2.0, 0.0]]])
    >>> criteria.apoz(a)
    array([0.75, 0.25])

    References:
        Hu, Peng, Tai & Tang, "Network Trimming: A Data-Driven Neuron Pruning
        Approach towards Efficient Deep Architectures", arXiv:1607.03250, 2016.
    """
    a = _as_activations(activations)
    flat = a.reshape(-1, a.shape[-1])
    return np.mean(flat > 0, axis=0, dtype=np.float64)


def _matrix_ranks(maps: np.ndarray, eps: float) -> np.ndarray:
    """Ranks of a stack of matrices `(..., R, S)` with NumPy's `matrix_rank` rule.

    `tol = σ_max · max(R, S) · eps`, with `eps` of the activations' own dtype (a
    float32 map is only known to float32 precision).
    """
    singular = np.linalg.svd(maps.astype(np.float64), compute_uv=False)
    tol = singular.max(axis=-1, keepdims=True) * max(maps.shape[-2:]) * eps
    return np.count_nonzero(singular > tol, axis=-1)


def hrank(activations: np.ndarray, gradients: np.ndarray | None = None) -> np.ndarray:
    """Mean matrix rank of each channel's feature map (HRank).

    For 2-D feature maps (`(B, H, W, C)`), the rank of every `H × W` map is
    computed as `numpy.linalg.matrix_rank` does (singular values above
    `σ_max · max(H, W) · eps`, with `eps` of the activations' dtype, so float32 maps
    use float32's `eps`) and averaged over examples. Other ranks, defined so that
    the score stays a matrix rank:
    - 3-D maps (`(B, D, H, W, C)`, Conv3D): every `H × W` slice is a map; the
      ranks are averaged over slices and examples.
    - 1-D maps (`(B, L, C)`, Conv1D) and Dense outputs (`(B, C)`): a `1 × L` (or
      `1 × 1`) matrix has rank 1 if it is non-zero and 0 otherwise, so the score is
      the fraction of examples on which the channel is not identically zero. It
      only separates dead channels from live ones; prefer another criterion there.

    Args:
        activations: Array of shape `(B, *spatial, C)` (channels last).
        gradients: Unused; accepted for the common signature. Defaults to `None`.

    Returns:
        Float64 array of shape `(C,)`: the batch mean. Higher means more important.

    Raises:
        ValueError: If `activations` has rank < 2 or contains NaN or Inf.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> u, v = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, -1.0])
    >>> a = np.zeros((1, 3, 3, 3))
    >>> a[0, :, :, 0] = np.outer(u, v)  # rank 1
    >>> a[0, :, :, 1] = np.eye(3)  # rank 3
    >>> criteria.hrank(a)  # channel 2 is all zeros: rank 0
    array([1., 3., 0.])

    References:
        Lin, Ji, Wang, Zhang, Zhang, Tian & Shao, "HRank: Filter Pruning using
        High-Rank Feature Map", CVPR 2020.
    """
    a = _as_activations(activations)
    eps = float(np.finfo(a.dtype if a.dtype.kind == "f" else np.float64).eps)
    if a.ndim <= 3:
        nonzero = _flat(a) != 0
        return np.mean(nonzero.any(axis=1), axis=0, dtype=np.float64)
    b, c = a.shape[0], a.shape[-1]
    height, width = a.shape[-3], a.shape[-2]
    # (B, ..., H, W, C) -> (B, C, slices, H, W): one matrix per example, channel, slice.
    maps = np.moveaxis(a.reshape(b, -1, height, width, c), -1, 1)
    total = np.zeros(c)
    for example in maps:  # one example at a time bounds the float64 copy's memory
        total += _matrix_ranks(example, eps).mean(axis=1)
    return total / b


def taylor(activations: np.ndarray, gradients: np.ndarray | None = None) -> np.ndarray:
    """First-order Taylor estimate of the loss change when a channel is removed.

    Per example, `|mean over positions of a[..., c] · ∂L/∂a[..., c]|`, then averaged
    over examples (Molchanov et al.'s criterion, without their per-layer L2
    normalisation). `gather_active_scores` provides `gradients` of the per-example
    loss, so the scores do not depend on the batch size.

    Args:
        activations: Array of shape `(B, *spatial, C)` (channels last).
        gradients: Array of the same shape: the loss gradient with respect to
            `activations`. Required.

    Returns:
        Float64 array of shape `(C,)`: the batch mean. Higher means more important.

    Raises:
        ValueError: If `gradients` is missing or its shape differs from that of
            `activations`, or either has rank < 2 or contains NaN or Inf.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> a = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, positions=2, C=2)
    >>> g = np.array([[[1.0, -1.0], [-1.0, 0.0]]])
    >>> criteria.taylor(a, g)  # |(1 - 3) / 2|, |(-2 + 0) / 2|
    array([1., 1.])

    References:
        Molchanov, Tyree, Karras, Aila & Kautz, "Pruning Convolutional Neural
        Networks for Resource Efficient Inference", ICLR 2017.
    """
    if gradients is None:
        raise ValueError(
            "`taylor` needs the loss gradients with respect to the activations. "
            "Use `gather_active_scores` with (x, y) data and a loss, or pass "
            "`gradients`. Received: gradients=None"
        )
    a = _as_activations(activations)
    g = _as_activations(gradients, "gradients")
    if a.shape != g.shape:
        raise ValueError(
            "`activations` and `gradients` must have the same shape. "
            f"Received: activations.shape={a.shape}, gradients.shape={g.shape}"
        )
    products = _flat(a).astype(np.float64) * _flat(g)
    return np.mean(np.abs(products.mean(axis=1)), axis=0)


# --------------------------------------------------------------------------- gather


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")


def _resolve_criterion(criterion: Any) -> tuple[str, Callable, bool]:
    """Returns `(display name, statistic, needs_gradients)` for an active criterion."""
    fn = registry.get(criterion)
    label = criterion if isinstance(criterion, str) else getattr(fn, "__name__", "fn")
    if registry._is_registered(criterion) and not registry.is_active(criterion):
        active = sorted(n for n in registry.names() if registry.is_active(n))
        raise ValueError(
            f"`criterion={criterion!r}` is a passive criterion (a function of the "
            "kernel) and cannot be gathered from activations. Active criteria: "
            f"{active}."
        )
    return label, fn, registry.needs_gradients(criterion)


def _resolve_loss(loss: Any, model: keras.Model, label: str) -> Callable:
    """Returns `fn(y_true, y_pred) -> per-example (or reduced) loss values`."""
    if loss is None:
        loss = getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            f"`criterion={label!r}` needs the gradient of a loss, but the model is not "
            "compiled with one. Pass `loss=` (a Keras loss, e.g. "
            "`keras.losses.SparseCategoricalCrossentropy()`, or a callable "
            "`fn(y_true, y_pred)`) or compile the model with a loss."
        )
    if isinstance(loss, list | tuple) and len(loss) == 1:
        loss = loss[0]
    if isinstance(loss, list | tuple | dict):
        raise ValueError(
            f"`criterion={label!r}` cannot use the model's per-output losses "
            f"({loss!r}). Pass `loss=` as one callable `fn(y_true, y_pred)` that "
            "takes the model's output structure."
        )
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss.call  # unreduced: one value per example
    if not callable(loss):
        raise TypeError(
            "`loss` must be a Keras loss, a loss name, or a callable "
            f"fn(y_true, y_pred). Received: loss={loss!r}"
        )
    return loss


def _check_labels(y: Any, model: keras.Model, step: int) -> None:
    """Class-index labels of a one-output classifier lie in [0, classes): a
    ValueError naming the batch, not the loss kernel's error."""
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1 or not hasattr(y, "shape"):
        return
    classes = outputs[0].shape[-1]
    y = np.asarray(keras.ops.convert_to_numpy(y))
    if classes is None or classes < 2 or y.dtype.kind not in "biuf":
        return
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not y.size or np.any(y != np.round(y)):
        return  # not class indices (one-hot rows, soft targets): the loss decides
    if y.min() < 0 or y.max() >= classes:
        bad = y[(y < 0) | (y >= classes)][0].item()
        raise ValueError(
            f"The labels of `data` (batch {step}) hold class {bad!r}, but the model "
            f"has {classes} classes (0 to {classes - 1}). Pass labels of this "
            "model's classes."
        )


def _unpacked(batches: Iterable) -> Iterable:
    for element in batches:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
        yield x, y


def _batches(data: Any, batch_size: int) -> tuple[Iterable, int | None]:
    """Returns an iterable of `(x, y)` batches and their number (or `None`)."""
    if isinstance(data, tf.data.Dataset):
        cardinality = int(data.cardinality())
        return _unpacked(data), (cardinality if cardinality >= 0 else None)
    if isinstance(data, tuple):
        if len(data) not in (1, 2, 3):
            raise ValueError(
                "A tuple `data` must be (x,), (x, y) or (x, y, sample_weight). "
                f"Received: a tuple of length {len(data)}"
            )
        x, y = data[0], (data[1] if len(data) > 1 else None)
    elif isinstance(data, list | dict) or hasattr(data, "shape"):
        x, y = data, None
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes):
        return _unpacked(data), None
    else:
        raise TypeError(
            "`data` must be a tf.data.Dataset, an array (or list/dict of arrays), "
            f"an (x, y) tuple or an iterable of batches. Received: {type(data)}"
        )
    leaves = keras.tree.flatten((x, y))
    lengths = {len(leaf) for leaf in leaves if leaf is not None}
    if len(lengths) != 1:
        raise ValueError(
            "All arrays in `data` must have the same number of examples. "
            f"Received lengths: {sorted(lengths)}"
        )
    n = lengths.pop()

    def take(structure, start):
        if structure is None:
            return None
        return keras.tree.map_structure(
            lambda a: a[start : start + batch_size], structure
        )

    return ((take(x, s), take(y, s)) for s in range(0, n, batch_size)), math.ceil(
        n / batch_size
    )


def _layer_outputs(model: keras.Model, layer_names: Sequence[str]) -> tuple[Any, list]:
    """Returns the model's input structure and the named layers' output tensors."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: {type(model)}")
    try:
        inputs = model.input  # functional: the structure it was built with
    except (AttributeError, ValueError):
        try:
            inputs = model.inputs  # Sequential: a flat list
        except (AttributeError, ValueError):
            inputs = None
        if inputs and len(inputs) == 1:
            inputs = inputs[0]
    if inputs is None or (isinstance(inputs, list | tuple | dict) and not inputs):
        raise ValueError(
            "`model` must be a built functional or Sequential model with known "
            f"inputs. Received: model {model.name!r} without `inputs`."
        )
    # Layers, and Keras ops (inside a traced composite layer's graph).
    known = {op.name: op for op in getattr(model, "operations", model.layers)}
    outputs = []
    for name in layer_names:
        if name not in known:
            names = [layer.name for layer in model.layers]
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise ValueError(
                f"No layer named {name!r} in model {model.name!r}. Its layers: {shown}."
            )
        output = known[name].output
        if isinstance(output, list | tuple | dict):
            raise ValueError(
                f"Layer {name!r} has several outputs; active criteria need a layer "
                "with a single output tensor."
            )
        outputs.append(output)
    return inputs, outputs


def _flat_copy(model: keras.Model, names: list[str]) -> tuple[keras.Model, dict]:
    """A flat copy of `model` (nested models inlined) and each name's layer in it."""
    from keras_filterprune._flatten import flat_model

    flat, paths = flat_model(model)  # checks the model (subclassed, unbuilt)
    unknown = [name for name in names if name not in paths]
    if unknown:
        raise ValueError(
            f"No layer {unknown[0]!r} in model {model.name!r} (nested layers are "
            "named by path, e.g. 'backbone/conv1'; a nested model called several "
            "times has no single output per layer)."
        )
    return flat, {name: paths[name] for name in names}


def gather_active_scores(
    model: keras.Model,
    layer_names: str | Sequence[str],
    data: Any,
    criterion: str | Callable,
    *,
    loss: Any = None,
    batch_size: int = 32,
    max_batches: int | None = None,
    verbose: int = 0,
) -> dict[str, np.ndarray]:
    """Runs data through a model and scores the channels of the named layers.

    One `keras.Model(model.inputs, [outputs of the named layers])` computes all the
    activations in a single forward pass per batch (`training=False`). The
    criterion's per-batch statistic is averaged over batches, weighted by batch
    size. For criteria that need gradients (`taylor`), the loss is summed over
    per-example losses and differentiated with respect to the named layers'
    outputs in the same pass, on any backend (TensorFlow, JAX, PyTorch).

    Args:
        model: A built functional or Sequential `keras.Model`.
        layer_names: Name or names of layers of `model` whose outputs are
            scored; layers inside nested models (a keras-hub task's backbone) by
            path, `"backbone/conv1"`: they are read from a flat copy of the model.
            Outputs are read channels last.
        data: A batched `tf.data.Dataset` yielding `x`, `(x, y)` or
            `(x, y, sample_weight)`; a NumPy array (or list/dict of arrays for a
            multi-input model) of inputs; an `(x, y)` tuple of arrays; or an
            iterable of batches. Sample weights are ignored.
        criterion: Name of a registered active criterion (`"mean_activation"`,
            `"apoz"`, `"hrank"`, `"taylor"`, or one added with
            `criteria.register(..., active=True)`), or a statistic
            `fn(activations, gradients=None) -> (C,)`; an unregistered callable is
            called without gradients.
        loss: Loss for criteria that need gradients: a Keras loss instance or name,
            or a callable `fn(y_true, y_pred)` returning per-example values (a
            scalar result is taken as a mean over the batch). Defaults to `None`:
            the model's compiled loss.
        batch_size: Int. Batch size for array data (datasets come batched).
            Defaults to `32`.
        max_batches: Int or `None`. Stop after this many batches. Defaults to
            `None` (all of `data`).
        verbose: `0` (silent) or `1` (a `keras.utils.Progbar`). Defaults to `0`.

    Returns:
        A dict mapping each layer name to a float64 array of shape `(C,)`.

    Raises:
        ValueError: If `data` is `None` or empty, a layer name is unknown,
            `criterion` is unknown or passive, the activations contain NaN or Inf,
            or gradients are needed without labels or a loss.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> inputs = keras.Input((4, 4, 1))
    >>> conv = keras.layers.Conv2D(
    ...     2, 3, padding="same", kernel_initializer="ones", name="conv"
    ... )
    >>> model = keras.Model(inputs, conv(inputs))
    >>> x = np.ones((8, 4, 4, 1), dtype="float32")
    >>> scores = criteria.gather_active_scores(model, ["conv"], x, "mean_activation")
    >>> scores["conv"]  # mean over the 4x4 map of 4, 6 or 9 summed ones
    array([6.25, 6.25])
    """
    label, stat_fn, needs_gradients = _resolve_criterion(criterion)
    if data is None:
        raise ValueError(
            f"`criterion={label!r}` is an active criterion and needs `data`: a "
            "batched tf.data.Dataset of x or (x, y), a NumPy array of inputs, or an "
            "(x, y) tuple of arrays. Received: data=None"
        )
    _check_positive_int(batch_size, "batch_size")
    _check_positive_int(max_batches, "max_batches", allow_none=True)
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    names = list(dict.fromkeys(layer_names))
    if not names:
        raise ValueError("`layer_names` must name at least one layer. Received: []")
    loss_fn = _resolve_loss(loss, model, label) if needs_gradients else None
    source, lookup = model, {name: name for name in names}
    if needs_gradients or any("/" in name for name in names):
        # Nested layers are read from a flat copy; gradients need one too (probes
        # are inserted after the scored layers, see `_gradients`).
        source, lookup = _flat_copy(model, names)
    inputs, outputs = _layer_outputs(source, [lookup[name] for name in names])
    if needs_gradients:
        extractor = GradientExtractor(source, [lookup[n] for n in names], loss_fn)
    else:
        extractor = keras.Model(inputs, outputs, name=f"{model.name}_activations")

    batches, count = _batches(data, batch_size)
    if max_batches is not None:
        count = max_batches if count is None else min(count, max_batches)
    progbar = keras.utils.Progbar(count, unit_name="batch") if verbose else None
    totals = [None] * len(names)
    seen = 0
    for step, (x, y) in enumerate(itertools.islice(batches, max_batches)):
        if needs_gradients:
            if y is None:
                raise ValueError(
                    f"`criterion={label!r}` needs labels to compute the loss "
                    "gradient: pass `data` as (x, y) arrays or a dataset of (x, y)."
                )
            _check_labels(y, model, step)
            activations, gradients = extractor(x, y)
        else:
            outputs = keras.tree.flatten(extractor(x, training=False))
            activations = [keras.ops.convert_to_numpy(a) for a in outputs]
            gradients = [None] * len(names)
        batch = int(activations[0].shape[0])
        for i, name in enumerate(names):
            a = activations[i]
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(
                    f"The activations of layer {name!r} contain NaN or Inf (batch "
                    f"{step}); check the model's weights and the data."
                )
            stat = np.asarray(stat_fn(a, gradients[i]), dtype=np.float64)
            channels = a.shape[-1]
            if stat.shape != (channels,) or not np.isfinite(stat).all():
                raise ValueError(
                    f"Criterion {label!r} must return {channels} finite values for "
                    f"layer {name!r} (one per channel). Received: shape={stat.shape}"
                )
            totals[i] = stat * batch if totals[i] is None else totals[i] + stat * batch
        seen += batch
        if progbar is not None:
            progbar.update(step + 1)
    if seen == 0:
        raise ValueError(
            f"`data` yielded no examples; `criterion={label!r}` needs at least one."
        )
    return {name: total / seen for name, total in zip(names, totals, strict=True)}
