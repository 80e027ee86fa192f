"""A model's graph as configs, from public structure only: views of functional
subclasses and traced subclassed models, the checks every entry point runs, and
`plain_config`, the editable config surgery rebuilds from.

Composite layers are expanded here into the Functional graphs of their `call`
(`keras_filterprune._inner`) wherever the caller asks for it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import keras

from keras_filterprune._inner import (
    base_configs,
    build_node,
    rebuild_error,
    trace_layer,
    trace_model,
)
from keras_filterprune.handlers import get_handler

__all__ = [
    "check_model",
    "composite_graph",
    "functional_view",
    "graph_model",
    "has_own_graph_config",
    "io_refs",
    "is_composite",
    "is_functional",
    "is_subclassed",
    "own_graph_config",
    "plain_config",
    "read_graph_config",
    "tensor_refs",
]


def own_graph_config(model: keras.Model, stubs: bool = False) -> dict | None:
    """`model.get_config()` when it describes the graph (`"layers"`), else `None`.

    With `stubs=True` (to read a graph's structure only), layers whose config
    cannot be written are described by their names (`base_configs`)."""
    try:
        config = model.get_config()
    except Exception as e:  # noqa: BLE001 - any layer's get_config may fail
        if is_subclassed(model):
            if isinstance(e, NotImplementedError):
                return None
            raise
        with base_configs(model.operations, stubs):  # keras-hub's Identity(dtype=…)
            config = model.get_config()
    return config if isinstance(config, dict) and "layers" in config else None


def read_graph_config(model: keras.Model) -> dict | None:
    """`own_graph_config` to read a graph's structure (never to rebuild it): stubs
    for configs that cannot be written, and Keras' warning about serialising a
    Python lambda (only a rebuild would need it) kept quiet."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*`lambda`")
        return own_graph_config(model, stubs=True)


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


def has_own_graph_config(model: keras.Model) -> bool:
    """Whether `type(model).from_config` rebuilds `model` from its graph config
    (plain Functional models and functional-like constructors), as opposed to
    functional subclasses whose config holds constructor arguments."""
    return isinstance(model, keras.Sequential) or own_graph_config(model) is not None


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
    config = own_graph_config(model)
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


def is_composite(layer: Any) -> bool:
    """Whether `layer` is traced inside: a layer without a handler that is not
    Keras' own (keras-hub blocks, users' layers, subclassed models nested in a
    model). Keras' own layers without a handler (`LSTM`, …) stay single, frozen
    layers; models with a graph are nested models."""
    if not isinstance(layer, keras.layers.Layer) or get_handler(layer) is not None:
        return False
    if type(layer).__module__.startswith("keras."):
        return False
    return not (isinstance(layer, keras.Model) and not is_subclassed(layer))


def composite_graph(
    layer: Any, nodes: list[dict] | None = None
) -> keras.Model | str | None:
    """The traced inner graph of a composite layer (`is_composite`), why it cannot
    be traced, or `None` for a layer that is not traced inside.

    Args:
        layer: The layer.
        nodes: The serialised inbound nodes of its call sites in a Functional
            config, or `None` (one call at the shape it was built with).
    """
    if not is_composite(layer):
        return None
    return trace_layer(layer, [build_node(layer)] if nodes is None else nodes)


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
        # Paired by position (a layer's config may not hold its name); the
        # config lists an InputLayer first when the model starts with one.
        layers = list(model.layers)
        entries = zip(config["layers"][len(config["layers"]) - len(layers) :], layers)
    else:
        if isinstance(model, keras.Sequential):
            model = keras.Model(model.inputs, model.outputs, name=model.name)
        config = check_model(model)
        view = graph_model(model)
        operations = {op.name: op for op in view.operations}
        entries = ((e, operations.get(e["name"])) for e in config["layers"])
    functional_before = {}
    for entry, layer in entries:
        functional_before[entry.get("name")] = is_functional(layer)
        path = prefix + entry.get("name", entry["config"].get("name", ""))
        inner = None
        if expand is not None and expand(path):
            nodes = entry.get("inbound_nodes")
            inner = composite_graph(layer, nodes or None)
        if isinstance(inner, keras.Model) and rebuild_error(inner) is None:
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


def is_functional(layer: Any) -> bool:
    """Whether Keras counts a built-in node for `layer` in the `output_layers` of a
    config (a Functional model or subclass: `keras.Model.get_config` numbers its
    nodes from 1 there, and `from_config` subtracts 1 again)."""
    return (
        isinstance(layer, keras.Model)
        and not isinstance(layer, keras.Sequential)
        and not is_subclassed(layer)
    )
