"""Flatten a built Keras model into its call sites, from public structure only.

The walk reads `model.get_config()` (its `inbound_nodes` name every call site, nested
models and shared layers included) and the live layers found with `get_layer`. It never
touches private node attributes, which change between Keras releases. Composite layers
and subclassed models are walked through the graphs of their `call`
(`keras_filterprune._config.composite_graph`).

Nested models are flattened: their call sites are listed with a path such as
`"backbone/conv1"`, and a nested model called twice has its inner call sites listed
twice (its layers are then shared layers).
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import keras

from keras_filterprune._config import (
    check_model,
    composite_graph,
    graph_model,
    io_refs,
    is_functional,
    is_subclassed,
    read_graph_config,
    tensor_refs,
)
from keras_filterprune._inner import rebuild_error, trace_layer

__all__ = ["Call", "ModelWalk", "walk_model"]


@dataclasses.dataclass
class Call:
    """One call of one (non-model) layer in the flattened graph.

    Attributes:
        path: `str`. The layer's path, `"nested_model/layer"` for nested layers.
        layer: The live `keras.layers.Layer`, or a Keras `Operation` (not a
            layer: no weights attributes) for Keras ops used in a Functional
            graph (`x + y`, `x * 2.0`).
        node_index: `int`. Which call of this layer (0 for the first).
        inputs: `list[int]`. Keys of the input tensors, in call order.
        outputs: `list[int]`. Keys of the output tensors.
        constants: `bool`. Whether the call also takes array constants (e.g.
            `x * np.ones(C)` in a Functional graph of Keras ops).
    """

    path: str
    layer: keras.layers.Layer
    node_index: int
    inputs: list[int]
    outputs: list[int]
    constants: bool = False


@dataclasses.dataclass
class ModelWalk:
    """The flattened call sites of a model in topological order.

    Attributes:
        calls: `list[Call]`, topologically sorted.
        shapes: `dict[int, tuple]`. Known shape of each tensor key.
        inputs: `list[int]`. Tensor keys of the model inputs.
        outputs: `list[int]`. Tensor keys of the model outputs.
        layers: `dict[str, keras.layers.Layer]`. Every non-model layer (and Keras
            op `Operation`) by path (the first path under which a shared layer
            was met).
        model_inputs: `dict[str, list[int]]`. For each nested model (or traced
            composite layer) path, the tensor keys its first call receives.
        composites: `dict[str, keras.layers.Layer]`. Every layer traced inside
            (a composite layer, a subclassed model), by path: its sub-layers and
            ops are call sites of the walk, under `"<path>/"`.
        untraced: `dict[str, str]`. Every layer without a handler that could not
            be traced inside, by path: why (its call is then one opaque call site).
        containers: `dict[str, keras.layers.Layer]`. Every nested model and traced
            composite layer by path, in walk order.
        unrebuildable: `dict[str, str]`. Traced composite layers that surgery
            could not rebuild from a config (a sub-layer holds a Python lambda, or
            cannot write its config), by path: why. They are walked (their MACs
            counted), and every channel inside them is frozen.
    """

    calls: list[Call]
    shapes: dict[int, tuple]
    inputs: list[int]
    outputs: list[int]
    layers: dict[str, keras.layers.Layer]
    model_inputs: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    composites: dict[str, keras.layers.Layer] = dataclasses.field(default_factory=dict)
    untraced: dict[str, str] = dataclasses.field(default_factory=dict)
    containers: dict[str, keras.layers.Layer] = dataclasses.field(default_factory=dict)
    unrebuildable: dict[str, str] = dataclasses.field(default_factory=dict)

    def unrebuildable_owner(self, path: str) -> str | None:
        """The composite layer around `path` that surgery cannot rebuild, if any."""
        for owner in self.unrebuildable:
            if path.startswith(owner + "/"):
                return owner
        return None

    def channels(self, key: int) -> int | None:
        """Size of the last (channel) axis of a tensor, or `None` if unknown."""
        shape = self.shapes.get(key)
        if not shape or shape[-1] is None:
            return None
        return int(shape[-1])


def _is_container(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _has_array_constant(obj: Any) -> bool:
    """Whether a serialised call argument holds a non-scalar constant."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return False
        if "class_name" in obj:  # a serialised array or object
            return True
        return any(_has_array_constant(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(v, (int, float)) for v in obj):
            return len(obj) > 1
        return any(_has_array_constant(v) for v in obj)
    return False


def _more_concrete(node: dict, model: keras.Model) -> bool:
    """Whether a call's input shapes fix dims that `model`'s inputs leave None."""
    called = [ref.get("shape") for ref in tensor_refs(node)]
    own = [tuple(t.shape) for t in model.inputs]
    if len(called) != len(own) or any(s is None for s in called):
        return False
    return any(
        o is None and c is not None
        for c_shape, o_shape in zip(called, own)
        for c, o in zip(c_shape[1:], o_shape[1:])
    )


def _shape(shape: Any) -> tuple | None:
    if shape is None:
        return None
    return tuple(None if d is None else int(d) for d in shape)


class _Walker:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.shapes: dict[int, tuple] = {}
        self.layers: dict[str, keras.layers.Layer] = {}
        self._paths: dict[int, str] = {}
        self.model_inputs: dict[str, list[int]] = {}
        self.composites: dict[str, keras.layers.Layer] = {}
        self.untraced: dict[str, str] = {}
        self.containers: dict[str, keras.layers.Layer] = {}
        self.unrebuildable: dict[str, str] = {}
        self._node_count: dict[int, int] = {}
        self._next = 0

    def new_key(self, shape: Any = None) -> int:
        key = self._next
        self._next += 1
        if shape is not None:
            self.shapes[key] = _shape(shape)
        return key

    def record(
        self, prefix: str, layer: Any, inputs: list[int], n_out: int, constants=False
    ) -> list:
        path = self._paths.setdefault(id(layer), prefix + layer.name)
        self.layers.setdefault(path, layer)
        node_index = self._node_count.get(id(layer), 0)
        self._node_count[id(layer)] = node_index + 1
        outputs = [self.new_key() for _ in range(n_out)]
        self.calls.append(
            Call(path, layer, node_index, list(inputs), outputs, constants)
        )
        return outputs

    def call(
        self,
        prefix: str,
        layer: Any,
        inputs: list,
        n_out: int,
        constants=False,
        nodes: list | None = None,
        node_index: int = 0,
    ):
        if _is_container(layer) and not is_subclassed(layer):
            node = nodes[node_index] if nodes else None
            return self.model(layer, prefix + layer.name + "/", inputs, node)
        inner = composite_graph(layer, nodes)
        if isinstance(inner, keras.Model) and nodes and len(nodes) > 1:
            inner = trace_layer(layer, [nodes[node_index]])  # this call's sizes
        path = self._paths.get(id(layer), prefix + getattr(layer, "name", ""))
        if isinstance(inner, str):
            self.untraced.setdefault(path, inner)
        elif inner is not None:
            self._paths.setdefault(id(layer), path)
            self.composites.setdefault(path, layer)
            self.containers.setdefault(path, layer)
            error = rebuild_error(inner)
            if error is not None:
                self.unrebuildable.setdefault(path, error)
            self.model_inputs.setdefault(path, list(inputs))
            config = read_graph_config(inner)
            return self.functional(inner, config, path + "/", inputs)
        return self.record(prefix, layer, inputs, n_out, constants)

    def model(
        self, model: keras.Model, prefix: str, inputs: list[int], node=None
    ) -> list:
        config = check_model(model, argument=f"nested model '{model.name}'")
        self.model_inputs.setdefault(prefix.rstrip("/"), list(inputs))
        self.containers.setdefault(prefix.rstrip("/"), model)
        if isinstance(model, keras.Sequential):
            return self.sequential(model, prefix, inputs)
        if node is not None and _more_concrete(node, model):
            # Called at sizes its own graph leaves unknown (a keras-hub backbone
            # built for any image size, inside a task of fixed size): its graph
            # at this call's sizes, so that every shape inside is known.
            view = trace_layer(model, [node])
            if isinstance(view, keras.Model):
                config = read_graph_config(view)
                return self.functional(view, config, prefix, inputs)
        return self.functional(model, config, prefix, inputs)

    def sequential(self, model: keras.Sequential, prefix: str, inputs: list) -> list:
        keys = inputs
        for layer in model.layers:
            keys = self.call(prefix, layer, keys, 1)
            _infer_shapes(self, self.calls[-1])
        return keys

    def functional(self, model: keras.Model, config: dict, prefix: str, inputs):
        local: dict[tuple[str, int, int], int] = {}
        input_refs = io_refs(config["input_layers"])
        if len(input_refs) != len(inputs):
            raise ValueError(
                f"Model '{model.name}' expects {len(input_refs)} inputs but is called "
                f"with {len(inputs)}; keras-filterprune cannot trace this call."
            )
        for ref, key in zip(input_refs, inputs):
            local[ref] = key
        # How many outputs each (layer, node) has: the largest index referenced.
        n_outputs: dict[tuple[str, int], int] = {}
        # Keras ops (`x + y` in a Functional graph) are operations, not layers.
        operations = {op.name: op for op in getattr(model, "operations", [])}
        pending = []
        nodes_of = {}
        for layer_cfg in config["layers"]:
            nodes_of[layer_cfg["name"]] = layer_cfg.get("inbound_nodes") or None
            for node_index, node in enumerate(layer_cfg.get("inbound_nodes", [])):
                refs = list(tensor_refs(node))
                constants = _has_array_constant(node)
                pending.append((layer_cfg["name"], node_index, refs, constants))
                for ref in refs:
                    name, n_idx, t_idx = ref["keras_history"]
                    n_outputs[(name, n_idx)] = max(
                        n_outputs.get((name, n_idx), 0), t_idx + 1
                    )
        output_refs = [
            (
                name,
                n_idx - is_functional(operations.get(name) or model.get_layer(name)),
                t,
            )
            for name, n_idx, t in io_refs(config["output_layers"])
        ]
        for name, n_idx, t_idx in output_refs:
            n_outputs[(name, n_idx)] = max(n_outputs.get((name, n_idx), 0), t_idx + 1)
        # Node-level topological order: a shared layer's nodes may sit far apart.
        while pending:
            remaining = []
            for item in pending:
                name, node_index, refs, constants = item
                keys = [local.get(tuple(r["keras_history"])) for r in refs]
                if any(k is None for k in keys):
                    remaining.append(item)
                    continue
                for key, ref in zip(keys, refs):
                    if key not in self.shapes and ref.get("shape") is not None:
                        self.shapes[key] = _shape(ref["shape"])
                layer = operations.get(name) or model.get_layer(name)
                n_out = n_outputs.get((name, node_index), 1)
                outs = self.call(
                    prefix, layer, keys, n_out, constants, nodes_of[name], node_index
                )
                for t_idx, key in enumerate(outs):
                    local[(name, node_index, t_idx)] = key
            if len(remaining) == len(pending):
                names = sorted({p[0] for p in remaining})
                raise ValueError(
                    f"Cannot order the graph of model '{model.name}': the call sites "
                    f"of {names} depend on tensors that are never produced."
                )
            pending = remaining
        return [local[ref] for ref in output_refs]


def walk_model(model: keras.Model, input_shape: tuple | None = None) -> ModelWalk:
    """Flattens a built model (Functional, Sequential or subclassed) into its call
    sites, composite layers traced inside.

    Args:
        model: A built `keras.Model` (Functional, Sequential or subclassed; nested
            models, composite layers and shared layers are supported).
        input_shape: The shape of one input example (no batch dim) to walk the
            model at, for a model built for any size (`(None, None, 3)`), so that
            every shape inside is known. Defaults to `None` (the model's own).

    Returns:
        A `ModelWalk` with the call sites in topological order.

    Raises:
        TypeError: for non-models and subclassed models that cannot be traced.
        ValueError: for unbuilt models, or a bad `input_shape`.

    Example:

    >>> import keras
    >>> inputs = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    >>> model = keras.Model(inputs, keras.layers.ReLU(name="relu")(x))
    >>> [call.path for call in walk_model(model).calls]
    ['conv', 'relu']
    """
    config = check_model(model)
    walker = _Walker()
    view = model if isinstance(model, keras.Sequential) else graph_model(model)
    if input_shape is not None:
        view = _at_shape(view, input_shape)
        config = read_graph_config(view)
    inputs = [walker.new_key(t.shape) for t in view.inputs]
    if isinstance(view, keras.Sequential):
        outputs = walker.sequential(model, "", inputs)
    else:
        outputs = walker.functional(view, config, "", inputs)
    for key, tensor in zip(outputs, view.outputs):
        walker.shapes.setdefault(key, _shape(tensor.shape))
    _fill_shapes(walker)
    return ModelWalk(
        walker.calls,
        walker.shapes,
        inputs,
        outputs,
        walker.layers,
        walker.model_inputs,
        walker.composites,
        walker.untraced,
        walker.containers,
        walker.unrebuildable,
    )


def _at_shape(model: keras.Model, input_shape: Any) -> keras.Model:
    """`model`'s graph traced at one input shape (a Functional view)."""
    own = [tuple(t.shape) for t in model.inputs]
    try:
        shape = None
        if isinstance(input_shape, (tuple, list)):
            shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(own) != 1
        or len(shape) != len(own[0]) - 1
        or any(d < 1 for d in shape)
        or any(o is not None and o != d for o, d in zip(own[0][1:], shape))
    ):
        raise ValueError(
            "`input_shape` must be the shape of one input example (no batch "
            "dim): positive ints that agree with the model's one input "
            f"{own}. Received: input_shape={input_shape!r}"
        )
    dtype = model.inputs[0].dtype
    node = {
        "args": [
            {
                "class_name": "__keras_tensor__",
                "config": {"shape": [None, *shape], "dtype": dtype},
            }
        ],
        "kwargs": {},
    }
    view = trace_layer(model, [node])
    if isinstance(view, str):
        raise ValueError(
            f"Model '{model.name}' cannot be walked at input_shape={shape}: {view}."
        )
    return view


def _fill_shapes(walker: _Walker) -> None:
    """Computes shapes the config did not record (e.g. inside Sequential models)."""
    for call in walker.calls:
        _infer_shapes(walker, call)


def _infer_shapes(walker: _Walker, call: Call) -> None:
    """Sets the output shapes of `call` from its input shapes, where unknown."""
    if all(k in walker.shapes for k in call.outputs):
        return
    in_shapes = [walker.shapes.get(k) for k in call.inputs]
    if any(s is None for s in in_shapes) or not in_shapes:
        return
    arg = in_shapes[0] if len(in_shapes) == 1 else in_shapes
    try:
        out = call.layer.compute_output_shape(arg)
    except Exception:  # noqa: BLE001 - any layer may not implement it
        return
    if len(call.outputs) == 1:
        out = [out]
    for key, shape in zip(call.outputs, out):
        if isinstance(shape, (list, tuple)) and (
            not shape or not isinstance(shape[0], (list, tuple))
        ):
            walker.shapes.setdefault(key, _shape(shape))
