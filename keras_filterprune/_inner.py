"""Tracing inside layers: the graph of a composite layer's (or a subclassed
model's) `call`.

Keras records a node for every layer and every `keras.ops` call made on symbolic
`KerasTensor`s. Calling a built layer's `call` (not `__call__`, which would record
the layer itself as one node) on `keras.Input`s therefore records its sub-layers
and ops, and `keras.Model(inputs, outputs)` turns them into a Functional graph
over the very same sub-layer objects (shared weights, nothing copied). The walk
descends into that graph as into a nested model; surgery rebuilds it in place of
the layer when a plan changes widths inside it. One mechanism for every block,
none per class.

What cannot be traced stays one opaque layer, its channel groups frozen and the
reason reported (`trace_layer` returns the reason instead of a graph):
Python control flow on tensor values, raw backend calls, a `call` that branches
on `training` in Python (the two modes would be different graphs), weights the
layer uses itself rather than through a sub-layer (a graph cannot carry them),
and arguments that are neither tensors nor plain values.

Tracing adds symbolic nodes to the sub-layers (as building any Functional model
does); weights, configs and the layer itself are never changed.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import warnings
import weakref
from typing import Any

import keras

__all__ = [
    "any_trace",
    "base_configs",
    "build_node",
    "layer_config",
    "rebuild_error",
    "trace_layer",
    "trace_model",
]

# layer -> {call signature: inner Functional model, or why it cannot be traced}
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# inner model -> why surgery cannot rebuild it from its config (it is still walked)
_REBUILD_ERRORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_REASON_LENGTH = 160


class _Untraceable(Exception):
    pass


@contextlib.contextmanager
def base_configs(operations, stubs: bool = False):
    """Lets Keras serialise the layers among `operations` that take only the base
    layer arguments (`name`, `dtype`, `trainable`) but were given a value Keras'
    automatic config refuses (keras-hub builds `Identity(dtype=<DTypePolicy>)`,
    whose `get_config` then raises): for the duration, their config is the base
    layer config, which rebuilds them exactly. With `stubs=True` every other layer
    whose config cannot be written gets a stub (its name only): enough to read a
    graph's structure, never to rebuild it. Nothing else is touched, and the
    layers are as they were on exit."""
    patched = []
    for op in operations:
        if not isinstance(op, keras.layers.Layer):
            continue
        try:
            op.get_config()
            continue
        except NotImplementedError:
            pass
        except Exception:  # noqa: BLE001 - any layer's get_config may fail
            if not stubs:
                continue
        own = [
            p
            for p in inspect.signature(type(op).__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        if own and not stubs:
            continue  # arguments of its own: only the layer can describe them
        config = {
            "name": op.name,
            "trainable": op.trainable,
            "dtype": keras.dtype_policies.serialize(op.dtype_policy),
        }
        vars(op)["get_config"] = lambda config=config: dict(config)
        patched.append(op)
    try:
        yield
    finally:
        for op in patched:
            vars(op).pop("get_config", None)


def layer_config(layer) -> dict:
    """`layer.get_config()`, with the fallback of `base_configs`."""
    with base_configs([layer]):
        return layer.get_config()


def _spec(shape, dtype) -> dict:
    """A serialised symbolic tensor, as in a Functional config's inbound nodes
    (any batch size)."""
    shape = [None] + [None if d is None else int(d) for d in shape[1:]]
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": dtype},
    }


def build_node(layer: keras.layers.Layer) -> dict | str:
    """An inbound node (`{"args", "kwargs"}`) for a layer called outside a
    Functional config (in a Sequential model, or to find its sub-layers), made
    from the input shape it was built with; or why there is none."""
    try:
        config = layer.get_build_config() or {}
    except Exception as e:  # noqa: BLE001 - any layer may override it
        return f"its build config cannot be read ({type(e).__name__})"
    shape = config.get("input_shape")
    # Keras records shapes, not dtypes: floats at full precision (a float16
    # compute dtype would round the inputs of a mixed-precision model).
    dtype = keras.config.floatx()
    shapes = config.get("shapes_dict")
    if shape is None and isinstance(shapes, dict) and shapes:  # several arguments
        return {"args": [_spec(s, dtype) for s in shapes.values()], "kwargs": {}}
    if shape is None:
        return (
            "Keras recorded no input shape when it was built (it records one "
            "when the layer also runs on symbolic tensors, which Python control "
            "flow on tensor values in `call()` prevents)"
        )
    if shape and all(isinstance(s, (list, tuple)) for s in shape):
        return {"args": [[_spec(s, dtype) for s in shape]], "kwargs": {}}
    if isinstance(shape, dict):
        return {"args": [{k: _spec(s, dtype) for k, s in shape.items()}], "kwargs": {}}
    return {"args": [_spec(shape, dtype)], "kwargs": {}}


def _signature(node: dict) -> str:
    """The node without its tensors' histories: two call sites with the same
    signature have the same inner graph."""

    def strip(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                cfg = obj["config"]
                return ["tensor", cfg.get("shape"), cfg.get("dtype")]
            return {k: strip(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [strip(v) for v in obj]
        return obj

    return json.dumps(strip(node), sort_keys=True, default=repr)


def trace_layer(layer: keras.layers.Layer, nodes: list[dict]) -> keras.Model | str:
    """The inner graph of `layer` for its call sites, or why it has none.

    Args:
        layer: A built layer (or model) without a handler.
        nodes: The serialised inbound nodes of its call sites (`{"args": …,
            "kwargs": …}` as in a Functional config), or `[build_node(layer)]`.

    Call sites whose inputs differ only in sizes (a head shared by the levels of
    a feature pyramid) share one graph traced with those dims unknown (`None`),
    provided each call site's own graph has the same operations.

    Returns:
        A Functional `keras.Model` named like the layer, whose operations are the
        layer's own sub-layers and Keras ops (traced once per layer and input
        signature), or a `str`: why the layer cannot be traced ("its call …").
    """
    if not nodes:
        return "it is never called"
    for node in nodes:
        if isinstance(node, str):
            return node
    unique = {_signature(node): node for node in nodes}
    if len(unique) == 1:
        return _cached(layer, nodes[0])
    merged = _merge(list(unique.values()))
    if merged is None:
        return "it is called with different arguments at different call sites"
    traces = [_cached(layer, node) for node in [merged, *unique.values()]]
    for trace in traces:
        if isinstance(trace, str):
            return trace
    if any(_structure(t) != _structure(traces[0]) for t in traces[1:]):
        return "its graph depends on the shape of its inputs"
    return traces[0]


def _cached(layer, node: dict) -> keras.Model | str:
    traces = _CACHE.setdefault(layer, {})
    key = _signature(node)
    if key not in traces:
        traces[key] = _trace(layer, node)
    return traces[key]


def _merge(nodes: list) -> Any:
    """One node for several call sites: the dims on which their tensors differ
    become `None`; `None` when they differ in anything else."""
    first = nodes[0]
    if isinstance(first, dict):
        if any(not isinstance(n, dict) or n.keys() != first.keys() for n in nodes):
            return None
        if first.get("class_name") == "__keras_tensor__":
            shapes = [n["config"]["shape"] for n in nodes]
            dtypes = {n["config"].get("dtype") for n in nodes}
            if len({len(s) for s in shapes}) != 1 or len(dtypes) != 1:
                return None
            shape = [d[0] if len(set(d)) == 1 else None for d in zip(*shapes)]
            return {**first, "config": {**first["config"], "shape": shape}}
        merged = {k: _merge([n[k] for n in nodes]) for k in first}
        return (
            None
            if any(v is None and first[k] is not None for k, v in merged.items())
            else merged
        )
    if isinstance(first, (list, tuple)):
        if any(not isinstance(n, (list, tuple)) or len(n) != len(first) for n in nodes):
            return None
        merged = [_merge(list(items)) for items in zip(*nodes)]
        return (
            None
            if any(v is None and f is not None for v, f in zip(merged, first))
            else merged
        )
    return first if all(n == first for n in nodes) else None


def trace_model(model: keras.Model) -> keras.Model | str:
    """The traced Functional view of a built subclassed model (a `call()`) at the
    input shape it was built with, or why it has none."""
    return trace_layer(model, [build_node(model)])


def any_trace(layer: keras.layers.Layer) -> keras.Model | str:
    """A traced graph of `layer` (the first one traced, else one traced at the
    shape it was built with): enough to name its sub-layers, never to walk it
    (its sizes may be another call's)."""
    traces = _CACHE.get(layer) or {}
    inner = next((m for m in traces.values() if isinstance(m, keras.Model)), None)
    return inner if inner is not None else trace_layer(layer, [build_node(layer)])


def _trace(layer, node: dict) -> keras.Model | str:
    try:
        model = _symbolic_graph(layer, node["args"], node.get("kwargs") or {})
        _check_training_branches(layer, node, model)
        _check_own_weights(layer, model)
        _check_constants(model)
    except _Untraceable as e:
        return str(e)
    error = _serialisation_error(model)
    if error is not None:
        _REBUILD_ERRORS[model] = error
    return model


def rebuild_error(inner: keras.Model) -> str | None:
    """Why surgery cannot rebuild a traced graph from its config (a sub-layer
    holds a Python lambda, or cannot write its config), or `None`. Such a graph
    is still walked (its MACs counted), but its channels are frozen."""
    return _REBUILD_ERRORS.get(inner)


def _symbolic_graph(layer, args, kwargs, **extra) -> keras.Model:
    inputs: list = []

    def symbolic(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                cfg = obj["config"]
                tensor = keras.Input(
                    batch_shape=tuple(cfg["shape"]), dtype=cfg.get("dtype")
                )
                inputs.append(tensor)
                return tensor
            if "class_name" in obj:
                raise _Untraceable(
                    f"its call takes a {obj['class_name']} argument, which cannot "
                    "be replayed symbolically"
                )
            return {k: symbolic(obj[k]) for k in sorted(obj)}  # Keras' flat order
        if isinstance(obj, (list, tuple)):
            return [symbolic(v) for v in obj]
        return obj

    args = symbolic(args)
    kwargs = {**symbolic(kwargs), **extra}
    if not inputs:
        raise _Untraceable("its call takes no tensor")
    if _is_graph(layer):  # a Functional model: its own graph replayed on `inputs`
        return keras.models.clone_model(
            layer,
            input_tensors=keras.tree.pack_sequence_as(layer.input, inputs),
            clone_function=lambda operation: operation,  # the same layers
        )
    kwargs = _accepted(layer, kwargs)
    try:
        outputs = layer.call(*args, **kwargs)
        flat = keras.tree.flatten(outputs)
        if not flat or not all(isinstance(t, keras.KerasTensor) for t in flat):
            raise _Untraceable("its call returns something other than Keras tensors")
        return keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs, name=layer.name
        )
    except _Untraceable:
        raise
    except Exception as e:  # noqa: BLE001 - any user code may fail symbolically
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if len(text) > _REASON_LENGTH:
            text = text[: _REASON_LENGTH - 1] + "…"
        raise _Untraceable(
            "its call cannot be traced on symbolic tensors (Python control flow "
            f"on tensor values or a raw backend call?): {type(e).__name__}: {text}"
        ) from e


def _accepted(layer, kwargs: dict) -> dict:
    """`kwargs` less the `training`/`mask` arguments that `layer.call` does not
    take (`Layer.__call__` passes them only to a `call` that declares them)."""
    try:
        parameters = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {
        k: v
        for k, v in kwargs.items()
        if k in parameters or k not in ("training", "mask")
    }


def _structure(model: keras.Model) -> list:
    return [
        id(op) if isinstance(op, keras.layers.Layer) else type(op).__name__
        for op in model.operations
        if not isinstance(op, keras.layers.InputLayer)  # new in every trace
    ]


def _check_training_branches(layer, node: dict, model: keras.Model) -> None:
    """Refuses a layer whose `call` builds another graph when training (a Python
    `if training:`): its traced graph would be right in one mode only."""
    kwargs = node.get("kwargs") or {}
    if _is_graph(layer):
        return  # a Functional model's call runs its graph: no Python branches
    try:
        parameters = inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return
    # A `training` given at the call site is replaced by the outer one when a
    # Functional model runs: both modes must give the same graph regardless.
    if "training" not in parameters:
        return
    structures = [
        _structure(_symbolic_graph(layer, node["args"], kwargs, training=mode))
        for mode in (True, False)
    ]
    if structures[0] != structures[1] or structures[1] != _structure(model):
        raise _Untraceable(
            "its call branches on `training` in Python, so its graph differs "
            "between training and inference"
        )


def _is_graph(layer) -> bool:
    """Whether `layer` is a Functional model (its call runs a fixed graph)."""
    if not isinstance(layer, keras.Model) or isinstance(layer, keras.Sequential):
        return False
    try:
        return bool(layer.inputs)
    except (AttributeError, ValueError):
        return False


def _check_constants(model: keras.Model) -> None:
    """Refuses a graph in which a call takes a concrete tensor (a sub-layer's
    weight used directly, `ops.transpose(self.dense.kernel)`): the graph would
    hold a frozen copy of it, untied from the weight."""
    with base_configs(model.operations, stubs=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = model.get_config()

    def constants(obj) -> bool:
        if isinstance(obj, dict):
            if obj.get("class_name") in ("__tensor__", "__numpy__"):
                return True
            return any(constants(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return any(constants(v) for v in obj)
        return False

    for entry in config["layers"]:
        if constants(entry.get("inbound_nodes", [])):
            raise _Untraceable(
                f"its call passes a concrete tensor to '{entry['name']}' (a weight "
                "used directly?), which a traced graph would hold as a frozen copy"
            )


def _serialisation_error(model: keras.Model) -> str | None:
    """Why surgery could not rebuild `model` from its config, or `None`."""
    for op in model.operations:
        try:
            with base_configs([op]), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                keras.saving.serialize_keras_object(op)
        except Exception as e:  # noqa: BLE001 - any layer's get_config may fail
            return (
                f"its sub-layer '{op.name}' ({type(op).__name__}) cannot write "
                f"its config ({type(e).__name__}: {str(e).splitlines()[0][:100]})"
            )
        if any("lambda" in str(w.message) for w in caught):
            return (
                f"its sub-layer '{op.name}' ({type(op).__name__}) holds a Python "
                "lambda, which Keras does not rebuild from a config"
            )
    return None


def _sublayer_weights(obj: Any, seen: set) -> set:
    """Ids of the weights of every layer held in `obj`'s attributes."""
    found: set = set()
    values = obj.values() if isinstance(obj, dict) else obj
    for value in values:
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, keras.layers.Layer):
            found.update(id(w) for w in value.weights)
        elif isinstance(value, (list, tuple, dict)):
            found |= _sublayer_weights(value, seen)
    return found


def _check_own_weights(layer, model: keras.Model) -> None:
    """Refuses a layer that uses weights of its own (not a sub-layer's) in its
    call: the traced graph would hold them as constants."""
    attributes = list(vars(layer).values())
    children = getattr(layer, "children", None)  # PyTorch modules keep them apart
    if callable(children):
        attributes += list(children())
    owned_by_sublayers = _sublayer_weights(attributes, {id(layer)})
    used = {id(w) for op in model.operations for w in getattr(op, "weights", ())}
    own = [
        w.path
        for w in layer.weights
        if id(w) not in owned_by_sublayers and id(w) not in used
    ]
    if own:
        raise _Untraceable(
            f"its call uses weights of its own ({', '.join(own[:3])}), which a "
            "traced graph cannot carry"
        )
