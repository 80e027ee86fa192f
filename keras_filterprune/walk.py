"""Flatten a built Keras model into its call sites, from public structure only.

The walk reads `model.get_config()` (its `inbound_nodes` name every call site, nested
models and shared layers included) and the live layers found with `get_layer`. It never
touches private node attributes, which change between Keras releases.

Nested models are flattened: their call sites are listed with a path such as
`"backbone/conv1"`, and a nested model called twice has its inner call sites listed
twice (its layers are then shared layers).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterator
from typing import Any

import keras

from keras_filterprune._inner import any_trace, base_configs, trace_layer, trace_model
from keras_filterprune.handlers import get_handler

__all__ = [
    "Call",
    "ModelWalk",
    "walk_model",
    "check_model",
    "composite_graph",
    "functional_view",
    "graph_config",
    "graph_model",
    "has_own_graph_config",
    "io_refs",
    "is_subclassed",
    "plain_config",
    "tensor_refs",
]


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

    def channels(self, key: int) -> int | None:
        """Size of the last (channel) axis of a tensor, or `None` if unknown."""
        shape = self.shapes.get(key)
        if not shape or shape[-1] is None:
            return None
        return int(shape[-1])


def _is_container(layer: Any) -> bool:
    return isinstance(layer, keras.Model)


def _own_graph_config(model: keras.Model) -> dict | None:
    """`model.get_config()` when it describes the graph (`"layers"`), else `None`."""
    try:
        config = model.get_config()
    except NotImplementedError:
        if is_subclassed(model):
            return None
        with base_configs(model.operations):  # keras-hub's `Identity(dtype=…)`
            config = model.get_config()
    return config if isinstance(config, dict) and "layers" in config else None


def functional_view(model: keras.Model) -> keras.Model | None:
    """A plain Functional model over the graph of a functional subclass, or `None`.

    Classes built through the functional constructor (keras-hub backbones and
    tasks, `class M(keras.Model)` calling `super().__init__(inputs=, outputs=)`)
    keep their graph but serialise constructor arguments. `keras.Model(model.input,
    model.output)` reads the very same layers and nodes through public API; a truly
    subclassed model (a `call()` method) has no `inputs` and gives `None`.
    """
    try:
        inputs, outputs = model.inputs, model.outputs
        structure_in, structure_out = model.input, model.output
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return keras.Model(structure_in, structure_out, name=model.name)


def graph_model(model: keras.Model) -> keras.Model | str:
    """The model whose operations are `model`'s graph: `model` itself (Functional,
    functional subclass), or the traced graph of a subclassed model's `call()`
    (`keras_filterprune._inner`); a `str` (why) when that cannot be traced."""
    return trace_model(model) if is_subclassed(model) else model


def graph_config(model: keras.Model) -> dict | None:
    """The Functional graph config of `model` (functional subclasses and traced
    subclassed models included), or `None` when `model` has no graph."""
    config = _own_graph_config(model)
    if config is not None:
        return config
    view = functional_view(model) or graph_model(model)
    return view.get_config() if isinstance(view, keras.Model) else None


def has_own_graph_config(model: keras.Model) -> bool:
    """Whether `type(model).from_config` rebuilds `model` from its graph config
    (plain Functional models and functional-like constructors), as opposed to
    functional subclasses whose config holds constructor arguments."""
    return isinstance(model, keras.Sequential) or _own_graph_config(model) is not None


def is_subclassed(model: keras.Model) -> bool:
    """Whether `model` is a subclassed model (a `call()` and no graph of its own):
    pruning traces it and returns a plain Functional model."""
    if isinstance(model, keras.Sequential):
        return False
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return True
    return not inputs


def check_model(model: Any, argument: str = "model") -> dict | None:
    """Raises a clear error unless `model` is a built Keras model with a graph.

    Functional subclasses (keras-hub backbones and tasks, users' classes built with
    `super().__init__(inputs=..., outputs=...)`) are Functional models here, and a
    built subclassed model is traced through its `call()`.

    Args:
        model: The object to check.
        argument: `str`. The argument name used in error messages.

    Returns:
        The Functional model's graph config (read to tell it from a subclassed
        model; callers reuse it rather than pay for a second one), or `None` for a
        Sequential model.

    Raises:
        TypeError: `model` is not a Keras model, or a subclassed model whose
            `call()` cannot be traced.
        ValueError: `model` is not built.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{argument}` must be a built Keras model (Functional, Sequential or "
            f"subclassed). Received: {argument} of type {type(model).__name__}."
        )
    if isinstance(model, keras.Sequential):
        if not model.built or not model.inputs:
            raise ValueError(
                f"`{argument}` (Sequential model '{model.name}') is not built: it has "
                "no known input shape. Start it with `keras.Input(shape)` or call "
                "`model.build(input_shape)` before pruning."
            )
        return None
    if not model.built:
        raise ValueError(
            f"`{argument}` ('{model.name}', class {type(model).__name__}) is not "
            "built: call it on a batch of data (or `model.build(input_shape)`) "
            "before pruning."
        )
    config = _own_graph_config(model)
    if config is not None:
        return config
    view = functional_view(model) or trace_model(model)
    if not isinstance(view, keras.Model):
        raise TypeError(
            f"`{argument}` ('{model.name}', class {type(model).__name__}) is a "
            f"subclassed model that cannot be traced: {view}. Rebuild it with "
            "the Functional API (`keras.Model(inputs, outputs)`) or "
            "`keras.Sequential`, or move that code out of `call()`, then prune."
        )
    return view.get_config()


def composite_graph(
    layer: Any, nodes: list[dict] | None = None
) -> keras.Model | str | None:
    """The traced inner graph of a composite layer, why it cannot be traced, or
    `None` for a layer that is not traced inside.

    Traced inside: layers without a handler that are not Keras' own (keras-hub
    blocks, users' layers, subclassed models nested in a model). Keras' own layers
    without a handler (`LSTM`, `Resizing`, …) stay single, frozen layers.

    Args:
        layer: The layer.
        nodes: The serialised inbound nodes of its call sites in a Functional
            config, or `None` (any graph traced before, else one call at the
            shape it was built with).
    """
    if not isinstance(layer, keras.layers.Layer) or get_handler(layer) is not None:
        return None
    if type(layer).__module__.startswith("keras."):
        return None
    if isinstance(layer, keras.Model) and not is_subclassed(layer):
        return None
    return any_trace(layer) if nodes is None else trace_layer(layer, nodes)


_FUNCTIONAL = dict(
    module="keras.src.models.functional",
    class_name="Functional",
    registered_name="Functional",
)


def _as_model_node(node: dict) -> dict:
    """A composite's inbound node as a call of its traced Functional graph: the
    tensors as the model's one input or list of inputs, no other argument."""
    refs = [{"class_name": "__keras_tensor__", "config": r} for r in tensor_refs(node)]
    return {"args": [refs[0] if len(refs) == 1 else refs], "kwargs": {}}


def plain_config(
    model: keras.Model,
    sequential_as_graph: bool = False,
    expand: Callable[[str], bool] | None = None,
    prefix: str = "",
) -> dict:
    """The config of `model` in which every functional subclass, nested or not,
    is described by its graph (class `Functional`), so that the whole tree can be
    edited layer by layer and rebuilt with `keras.Model.from_config`.

    With `sequential_as_graph=True` Sequential models (nested or not) are written
    as Functional graphs too, and every nested model's entry is marked
    `Functional`: one kind of node to inline (`_flatten`). Composite layers whose
    path `expand(path)` accepts are written as their traced Functional graph
    (`composite_graph`), under the same name."""
    if isinstance(model, keras.Sequential) and not sequential_as_graph:
        config = model.get_config()
        by_name = {layer.name: layer for layer in model.layers}  # no InputLayer
        entries = ((e, by_name.get(e["config"].get("name"))) for e in config["layers"])
    else:
        if isinstance(model, keras.Sequential):
            model = keras.Model(model.inputs, model.outputs, name=model.name)
        config = check_model(model)
        view = graph_model(model)
        operations = {op.name: op for op in view.operations}
        entries = ((e, operations.get(e["name"])) for e in config["layers"])
    functional_before = {}
    for entry, layer in entries:
        functional_before[entry.get("name")] = _is_functional(layer)
        path = prefix + entry.get("name", entry["config"].get("name", ""))
        inner = None
        if expand is not None and expand(path):
            nodes = entry.get("inbound_nodes")
            inner = composite_graph(layer, nodes or None)
        if isinstance(inner, keras.Model):
            entry.update(_FUNCTIONAL)
            entry["config"] = plain_config(
                inner, sequential_as_graph, expand, path + "/"
            )
            if entry.get("inbound_nodes"):
                entry["inbound_nodes"] = [
                    _as_model_node(n) for n in entry["inbound_nodes"]
                ]
            entry.pop("build_config", None)
        elif isinstance(layer, keras.Model):
            entry["config"] = plain_config(
                layer, sequential_as_graph, expand, path + "/"
            )
            if sequential_as_graph or not has_own_graph_config(layer):
                entry.update(_FUNCTIONAL)
    if "output_layers" in config:
        # Keras numbers a Functional entry's nodes from 1 in `output_layers`:
        # follow the entries whose class changed to or from Functional.
        functional_now = {
            e.get("name"): e["class_name"] == "Functional" for e in config["layers"]
        }

        def renumber(ref):
            if isinstance(ref, dict):
                return {k: renumber(v) for k, v in ref.items()}
            if len(ref) == 3 and isinstance(ref[0], str) and isinstance(ref[1], int):
                name = ref[0]
                shift = functional_now[name] - functional_before.get(name, False)
                return [name, ref[1] + shift, ref[2]]
            return [renumber(r) for r in ref]

        config["output_layers"] = renumber(config["output_layers"])
    return config


def tensor_refs(obj: Any) -> Iterator[dict]:
    """Yields the serialised `__keras_tensor__` dicts in `obj`, in Keras' flat
    order (`keras.tree.flatten`: dicts by sorted key)."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            yield obj["config"]
            return
        for key in sorted(obj):
            yield from tensor_refs(obj[key])
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from tensor_refs(value)


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


def io_refs(refs: Any) -> list[tuple[str, int, int]]:
    """Normalises `input_layers`/`output_layers` (a triple, a list or a dict) in
    Keras' flat order (`keras.tree.flatten`: dicts by sorted key)."""
    if isinstance(refs, dict):
        refs = [refs[key] for key in sorted(refs)]
    if (
        isinstance(refs, (list, tuple))
        and len(refs) == 3
        and isinstance(refs[0], str)
        and isinstance(refs[1], int)
    ):
        return [(refs[0], refs[1], refs[2])]
    out = []
    for ref in refs:
        out.extend(io_refs(ref))
    return out


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


def _is_functional(layer: Any) -> bool:
    """Whether Keras counts a built-in node for `layer` in the `output_layers` of a
    config (a Functional model or subclass: `keras.Model.get_config` numbers its
    nodes from 1 there, and `from_config` subtracts 1 again)."""
    return (
        isinstance(layer, keras.Model)
        and not isinstance(layer, keras.Sequential)
        and not is_subclassed(layer)
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
            self.model_inputs.setdefault(path, list(inputs))
            return self.functional(inner, _own_graph_config(inner), path + "/", inputs)
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
                return self.functional(view, _own_graph_config(view), prefix, inputs)
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
                n_idx - _is_functional(operations.get(name) or model.get_layer(name)),
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
    """Flattens a built Functional or Sequential model into its call sites.

    Args:
        model: A built `keras.Model` (Functional, Sequential or subclassed; nested
            models, composite layers and shared layers are supported).
        input_shape: The shape of one input example (no batch dim) to walk the
            model at, for a model built for any size (`(None, None, 3)`), so that
            every shape inside is known. Defaults to `None` (the model's own).

    Returns:
        A `ModelWalk` with the call sites in topological order.

    Raises:
        TypeError: for subclassed models and non-models.
        ValueError: for unbuilt models.

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
        config = _own_graph_config(view)
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
