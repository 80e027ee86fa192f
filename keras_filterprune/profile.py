"""Per-layer parameter and MAC counts of a Keras model.

`profile_model` walks every call site of a built Functional or Sequential model (nested
models and shared layers included, see `keras_filterprune.walk`) and counts, per call:

- **MACs**: multiply-accumulates for ONE example (batch element), at inference.
  Conv1D/2D/3D: `prod(out spatial) * prod(kernel) * C_in / groups * filters`.
  DepthwiseConv1D/2D: `prod(out spatial) * prod(kernel) * C_in * depth_multiplier`.
  SeparableConv1D/2D: its depthwise part plus its pointwise part
  `prod(out spatial) * C_in * depth_multiplier * filters`.
  Conv1D/2D/3DTranspose: `prod(in spatial) * prod(kernel) * C_in * filters`.
  Dense: `prod(leading non-batch dims) * in * units`.
  BatchNormalization: one fused multiply-add per output element (at inference the
  normalisation folds into `x * scale + shift`).
  Pooling: `output elements * prod(pool_size)`; adaptive pooling: the sum of its
  window sizes; global pooling: the number of input elements.
  Bias adds, activations, merges (`Add`, ...) and reshapes count 0.
  A layer called several times counts at every call.
- **Params**: the layer's `count_params()`, counted once per layer: a shared layer's
  parameters appear at its first call only, so `total_params == model.count_params()`.

Each rule is the `macs` method of the layer's handler (`keras_filterprune.handlers`),
so a layer taught with `register_handler` is counted by its own rule. Layers that
own weights but have no MAC rule (e.g. `LayerNormalization`, `PReLU`, `Embedding`,
custom layers without a handler) count 0 MACs and are listed in
`ModelProfile.uncounted`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import keras

from keras_filterprune._config import check_model
from keras_filterprune._deprecation import graph_argument_removed
from keras_filterprune._traces import remembered
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.handlers import (
    UnknownShapeError,
    get_handler,
    registry_version,
)
from keras_filterprune.walk import ModelWalk, walk_model

__all__ = [
    "LayerProfile",
    "ModelProfile",
    "count_macs",
    "count_params",
    "profile_model",
]

Shape = tuple


# --- results -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """Parameters and MACs of one call site of one layer.

    Attributes:
        path: `str`. The layer's path, `"nested_model/layer"` for nested layers.
        class_name: `str`. The layer's class name.
        output_shape: The output shape (`None` batch dim), a tuple of shapes for a
            layer with several outputs, or `None` if unknown.
        params: `int`. The layer's parameters; 0 at a shared layer's later calls.
        trainable_params: `int`. The trainable part of `params`.
        macs: `int`. Multiply-accumulates of this call for one example.
        node_index: `int`. Which call of the layer this is (0 for the first).
    """

    path: str
    class_name: str
    output_shape: Any
    params: int
    trainable_params: int
    macs: int
    node_index: int = 0

    @property
    def non_trainable_params(self) -> int:
        """`int`. The non-trainable part of `params`."""
        return self.params - self.trainable_params


def _human(n: int) -> str:
    """Formats a count with 3 significant digits and a K/M/G/T suffix."""
    for scale, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= scale * 0.9995:
            return f"{n / scale:.3g}{suffix}"
    return str(n)


def _shape_str(shape: Any) -> str:
    if shape is None:
        return "?"
    if shape and isinstance(shape[0], tuple):
        return ", ".join(_shape_str(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _jsonable_shape(shape: Any) -> Any:
    if isinstance(shape, (tuple, list)):
        return [_jsonable_shape(d) for d in shape]
    return shape


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """Per-call-site parameters and MACs of a model; made by `profile_model`.

    Attributes:
        layers: `list[LayerProfile]`, one per call site in topological order.
        uncounted: `tuple[str, ...]`. Paths of layers that own weights but have no
            MAC rule; their MACs are counted as 0.
    """

    layers: list[LayerProfile]
    uncounted: tuple[str, ...] = ()

    @property
    def total_params(self) -> int:
        """`int`. All parameters, each shared layer once (`model.count_params()`)."""
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        """`int`. Trainable parameters."""
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def non_trainable_params(self) -> int:
        """`int`. Non-trainable parameters (e.g. BatchNormalization statistics)."""
        return self.total_params - self.trainable_params

    @property
    def total_macs(self) -> int:
        """`int`. Multiply-accumulates for one example, summed over all calls."""
        return sum(layer.macs for layer in self.layers)

    def by_layer(self) -> dict[str, tuple[int, int]]:
        """Sums each layer's calls.

        Returns:
            A dict mapping each layer path to `(params, macs)`, in first-call order.
        """
        out: dict[str, tuple[int, int]] = {}
        for layer in self.layers:
            params, macs = out.get(layer.path, (0, 0))
            out[layer.path] = (params + layer.params, macs + layer.macs)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the totals and the per-call-site rows."""
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_macs": self.total_macs,
            "uncounted": list(self.uncounted),
            "layers": [
                {
                    **dataclasses.asdict(layer),
                    "output_shape": _jsonable_shape(layer.output_shape),
                }
                for layer in self.layers
            ],
        }

    def table(self, human: bool = False) -> str:
        """Formats the profile as a fixed-width table with a totals row.

        Args:
            human: `bool`. Show counts as `46.2K`, `1.2M`, `3.4G` instead of exact
                numbers with thousands separators. Defaults to `False`.

        Returns:
            The table, as a `str` (nothing is printed).
        """

        def number(n: int) -> str:
            return _human(n) if human else f"{n:,}"

        total_macs = self.total_macs
        header = ("Layer", "Type", "Output shape", "Params", "MACs", "MACs %")
        rows = []
        for layer in self.layers:
            name = layer.path
            if layer.node_index:
                name += f" [call {layer.node_index}]"
            share = 100.0 * layer.macs / total_macs if total_macs else 0.0
            rows.append(
                (
                    name,
                    layer.class_name,
                    _shape_str(layer.output_shape),
                    number(layer.params),
                    number(layer.macs),
                    f"{share:.1f}",
                )
            )
        totals = ("Total", "", "", number(self.total_params), number(total_macs), "")
        widths = [
            max(len(row[i]) for row in [header, *rows, totals])
            for i in range(len(header))
        ]

        def line(row: Sequence[str]) -> str:
            cells = [
                cell.ljust(width) if i < 3 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines = [line(header), rule, *map(line, rows), rule, line(totals)]
        lines.append(
            f"Params: {number(self.total_params)} (trainable "
            f"{number(self.trainable_params)}, non-trainable "
            f"{number(self.non_trainable_params)}); MACs per example: "
            f"{number(total_macs)}"
        )
        if self.uncounted:
            lines.append("No MAC rule (counted as 0): " + ", ".join(self.uncounted))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# --- entry points ------------------------------------------------------------------


def _param_counts(layer: keras.layers.Layer) -> tuple[int, int]:
    """(all, trainable) parameters; 0 for Keras ops (`x + y` in a graph)."""
    weights = getattr(layer, "weights", ())
    trainable = getattr(layer, "trainable_weights", ())
    return (
        int(sum(math.prod(w.shape) for w in weights)),
        int(sum(math.prod(w.shape) for w in trainable)),
    )


def _output_shape(shapes: dict, keys: list[int]) -> Any:
    found = [shapes.get(k) for k in keys]
    if len(found) == 1:
        return found[0]
    return None if any(s is None for s in found) else tuple(found)


@graph_argument_removed
def profile_model(
    model: keras.Model, *, input_shape: tuple | None = None
) -> ModelProfile:
    """Counts the parameters and MACs of every call site of a model.

    MACs are multiply-accumulates for one example at inference; bias adds,
    activations and merges are not counted; BatchNormalization counts one fused
    multiply-add per output element; pooling counts one operation per window
    element. See the module docstring for the rule of each layer type. Parameters
    are counted once per layer, even for a layer called several times, so
    `total_params` equals `model.count_params()`.

    Args:
        model: A built Functional or Sequential `keras.Model` with a fixed input
            size (nested models and shared layers are supported).
        input_shape: The shape of one input example (no batch dim), e.g.
            `(224, 224, 3)`, to count a model built for any image size (a
            keras-hub backbone's `(None, None, 3)`) at that size. Defaults to
            `None` (the model's own input shape).

    Returns:
        A `ModelProfile`; `str(profile)` is a table. Layers inside composite
        layers (traced through their `call`) are counted one by one.

    Raises:
        TypeError: `model` is not a Keras model, or is a subclassed model that
            cannot be traced.
        ValueError: `model` is not built, a layer's shape has unknown (`None`)
            dims (pass `input_shape`), or a bad `input_shape`.

    Warns:
        FilterPruneWarning: layers with weights but no MAC rule (counted 0).

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    >>> outputs = keras.layers.Dense(2, name="fc")(x)
    >>> profile = profile_model(keras.Model(inputs, outputs))
    >>> profile.total_params, profile.total_macs  # conv 6*6*3*3*3*4, gap 144, fc 8
    (122, 4040)
    >>> print(profile)
    Layer  Type                    Output shape     Params   MACs  MACs %
    ---------------------------------------------------------------------
    conv   Conv2D                  (None, 6, 6, 4)     112  3,888    96.2
    gap    GlobalAveragePooling2D  (None, 4)             0    144     3.6
    fc     Dense                   (None, 2)            10      8     0.2
    ---------------------------------------------------------------------
    Total                                              122  4,040
    Params: 122 (trainable 122, non-trainable 0); MACs per example: 4,040
    """
    graph = remembered(model, registry_version()) if input_shape is None else None
    # A model traced already (a plan was made) is not walked again; its profile is
    # counted afresh (trainable flags change) and warns like any other.
    walk = graph.walk if graph is not None else walk_model(model, input_shape)
    profile = profile_walk(walk)
    # Per-channel weights (a LayerNorm's gamma) cost next to nothing; a layer
    # nobody knows, or with kernels, may cost anything: say so.
    unknown = [
        path
        for path in profile.uncounted
        if get_handler(walk.layers[path]) is None
        or any(len(w.shape) >= 2 for w in walk.layers[path].weights)
    ]
    if unknown:
        warnings.warn(
            f"The MACs of {len(unknown)} layer(s) with weights are unknown and "
            f"counted as 0: {unknown[:5]}. Teach keras-filterprune those layers "
            "(`register_handler`, a handler's `macs` method) for a true count.",
            FilterPruneWarning,
            stacklevel=3,
        )
    return profile


def call_macs(walk: ModelWalk, call, *, layer=None, shapes=None) -> int | None:
    """MACs of one call site (its handler's rule), or `None` without a rule.

    Args:
        walk: The walked model.
        call: One of its `Call`s.
        layer: Count this layer instead of `call.layer` (a pruned copy).
        shapes: Tensor key → shape, instead of `walk.shapes`.

    Raises:
        ValueError: the rule needs a shape the walk does not know.
    """
    handler = get_handler(call.layer)
    if handler is None:
        return None
    layer = call.layer if layer is None else layer
    shapes = walk.shapes if shapes is None else shapes
    in_shapes = [shapes.get(k) for k in call.inputs]
    out_shapes = [shapes.get(k) for k in call.outputs]
    try:
        macs = handler.macs(layer, in_shapes, out_shapes)
    except UnknownShapeError as e:
        raise _unknown_shape_error(call.path, call.layer, e.shape) from None
    return None if macs is None else int(macs)


def profile_walk(walk: ModelWalk) -> ModelProfile:
    """`profile_model` of an already walked model (no second walk)."""
    seen: set[int] = set()
    uncounted: list[str] = []
    layers = []
    for call in walk.calls:
        layer = call.layer
        params = trainable = 0
        if id(layer) not in seen:
            seen.add(id(layer))
            params, trainable = _param_counts(layer)
        macs = call_macs(walk, call)
        if macs is None and params and call.path not in uncounted:
            uncounted.append(call.path)
        layers.append(
            LayerProfile(
                path=call.path,
                class_name=type(layer).__name__,
                output_shape=_output_shape(walk.shapes, call.outputs),
                params=params,
                trainable_params=trainable,
                macs=macs or 0,
                node_index=call.node_index,
            )
        )
    return ModelProfile(layers, tuple(uncounted))


def _unknown_shape_error(path: str, layer: Any, shape: Shape | None) -> ValueError:
    if shape is None:
        return ValueError(
            f"Cannot count the MACs of layer '{path}' ({type(layer).__name__}): the "
            "shape of its input or output is unknown (its `compute_output_shape` "
            "failed while the model graph was walked)."
        )
    return ValueError(
        f"Cannot count the MACs of layer '{path}' ({type(layer).__name__}): its "
        f"input or output shape {_shape_str(shape)} has unknown (None) dims. "
        "Counting MACs needs a model with a fixed input size, e.g. built on "
        "`keras.Input((224, 224, 3))` rather than `keras.Input((None, None, 3))`, "
        "or counted with `input_shape=(224, 224, 3)`."
    )


@graph_argument_removed
def count_macs(model: keras.Model, *, input_shape: tuple | None = None) -> int:
    """Counts the multiply-accumulates of one forward pass of one example.

    Shorthand for `profile_model(model).total_macs`; see `profile_model` for the
    conventions.

    Args:
        model: A built Functional or Sequential `keras.Model` with a fixed input size.
        input_shape: The shape of one input example (no batch dim) to count a
            model built for any image size at. Defaults to `None`.

    Returns:
        The MACs per example, an `int`.

    Raises:
        TypeError: `model` is not a Keras model, or a subclassed model that
            cannot be traced.
        ValueError: `model` is not built or has unknown (`None`) dims.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    >>> count_macs(model)  # 16 * 4; the bias add is not counted
    64
    """
    return profile_model(model, input_shape=input_shape).total_macs


def count_params(model: keras.Model) -> int:
    """Counts a model's parameters, each shared layer once.

    Equals `model.count_params()` but checks the model as `profile_model` does and
    does not need a fixed input size.

    Args:
        model: A built Functional or Sequential `keras.Model`.

    Returns:
        The number of parameters (trainable and non-trainable), an `int`.

    Raises:
        TypeError: `model` is not a Keras model, or a subclassed model that
            cannot be traced.
        ValueError: `model` is not built.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)])
    >>> count_params(model)  # 16 * 4 weights + 4 biases
    68
    """
    check_model(model)
    layers = {id(call.layer): call.layer for call in walk_model(model).calls}
    return sum(_param_counts(layer)[0] for layer in layers.values())
