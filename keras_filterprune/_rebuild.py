"""Rebuilding a model from its edited config and copying weights by layer path:
the mechanics surgery (`apply_plan`) and masking (`mask_model`) share."""

from __future__ import annotations

import copy
import warnings

import keras

from keras_filterprune._config import (
    has_own_graph_config,
    io_refs,
    is_subclassed,
    plain_config,
)
from keras_filterprune._paths import all_layers, layer_by_path, layers_by_path
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.graph import ChannelGraph
from keras_filterprune.handlers import get_handler
from keras_filterprune.walk import walk_model

__all__ = [
    "check_rebuildable",
    "custom_objects",
    "rebuild",
    "set_weights",
]


def check_rebuildable(graph: ChannelGraph) -> None:
    """Raises a ValueError naming the first layer its handler says cannot be
    rebuilt from its config (e.g. a Lambda layer)."""
    for path, layer in graph.walk.layers.items():
        handler = get_handler(layer)
        error = handler.rebuild_error(layer) if handler is not None else None
        if error:
            raise ValueError(f"Layer '{path}' {error}")


def _layer_entries(config: dict, prefix: str = ""):
    """Yields (path, entry) for every layer entry of a model config, recursively."""
    for entry in config.get("layers", []):
        name = entry.get("name") or entry["config"]["name"]
        if "layers" in entry.get("config", {}):
            yield prefix + name, entry
            yield from _layer_entries(entry["config"], prefix + name + "/")
        else:
            yield prefix + name, entry


def custom_objects(model: keras.Model) -> dict:
    """Users' own layer classes, so that unregistered ones rebuild too."""
    return {
        type(layer).__name__: type(layer)
        for layer in all_layers(model)
        if not type(layer).__module__.startswith("keras.")
    }


def rebuild(model: keras.Model, configs: dict, input_widths: dict) -> keras.Model:
    """A new model from `model`'s config with some layer configs replaced
    (`configs[path]`) and nested models' input widths changed.

    A composite layer (traced inside) with a changed layer or input width inside
    comes back as a Functional model of its traced graph, under its name: its own
    constructor arguments cannot describe the new widths. Untouched composite
    layers keep their class."""
    touched = [*configs, *input_widths]

    def expand(path: str) -> bool:
        return any(t == path or t.startswith(path + "/") for t in touched)

    config = plain_config(model, expand=expand)
    for path, entry in _layer_entries(config):
        entry.pop("build_config", None)
        if path in configs:
            entry["config"] = copy.deepcopy(configs[path])
        if path in input_widths:
            _set_input_widths(entry["config"], input_widths[path])
    original = copy.deepcopy(config)
    swapped = _zero_initializers(config, layers_by_path(model))
    new_model = _rebuild_task(model, config, configs, input_widths)
    if new_model is None:
        new_model = _from_config(model, config)
    if swapped and not _restore_initializers(new_model, swapped):
        new_model = _rebuild_task(model, original, configs, input_widths)
        if new_model is None:
            new_model = _from_config(model, original)
    return new_model


_ZEROS = {
    "module": "keras.initializers",
    "class_name": "Zeros",
    "config": {},
    "registered_name": None,
}


def _zero_initializers(config: dict, layers: dict) -> dict[str, dict]:
    """Gives the built-in Keras layers of `config` zeros initializers, and
    returns `{path: {key: initializer config}}` to restore.

    Every weight of the rebuilt model is then set from the original, so the
    initial values are thrown away; but on JAX a random initializer compiles a
    kernel for each new weight shape (most of `apply_plan`'s time there). Only
    an initializer that the original layer (`layers[path]`) keeps as a plain
    attribute of the argument's name, serialising to the config's value, is
    swapped, so that it can be put back (not an LSTM's, which forwards to its
    cell; not users' or other libraries' layers)."""
    swapped: dict[str, dict] = {}
    for path, entry in _layer_entries(config):
        layer = layers.get(path)
        if layer is None or not str(entry.get("module", "")).startswith("keras.layers"):
            continue
        layer_config = entry.get("config", {})
        attributes = vars(layer)
        keys = [
            k
            for k, v in layer_config.items()
            if k.endswith("_initializer")
            and isinstance(v, dict)
            and v != _ZEROS
            and k in attributes
            and _serialized(attributes[k]) == v
        ]
        if keys:
            swapped[path] = {k: layer_config[k] for k in keys}
            for k in keys:
                layer_config[k] = dict(_ZEROS)
    return swapped


def _serialized(initializer) -> dict | None:
    try:
        return keras.initializers.serialize(initializer)
    except Exception:  # noqa: BLE001 - not an initializer Keras can describe
        return None


def _restore_initializers(new_model: keras.Model, swapped: dict) -> bool:
    """Puts the original initializers back on the rebuilt layers; False when a
    layer does not report them back in its config (then it is rebuilt with
    them)."""
    index = layers_by_path(new_model)
    for path, initializers in swapped.items():
        layer = index.get(path)
        if layer is None:
            return False
        for key, value in initializers.items():
            if key not in vars(layer):
                return False
            setattr(layer, key, keras.initializers.get(copy.deepcopy(value)))
        config = layer.get_config()
        if any(config.get(k) != v for k, v in initializers.items()):
            return False
    return True


def _from_config(model: keras.Model, config: dict) -> keras.Model:
    """`model` rebuilt from its (edited) plain config, with its layer names. A
    functional subclass (a keras-hub backbone) comes back as a plain Functional
    model with the same inputs and outputs: its constructor arguments no longer
    describe the pruned graph."""
    cls = type(model) if has_own_graph_config(model) else keras.Model
    if is_subclassed(model):
        warnings.warn(
            f"'{model.name}' ({type(model).__name__}) is a subclassed model: it is "
            "returned as a plain functional keras.Model of its traced `call()`, with "
            "the same inputs, outputs and layer names. Its class (and any method "
            "other than `call`) could not be kept.",
            FilterPruneWarning,
            stacklevel=4,
        )
    with keras.saving.custom_object_scope(custom_objects(model)):
        new_model = cls.from_config(config)
    _restore_names(model, new_model)
    return new_model


def _task_backbone(model: keras.Model) -> keras.Model | None:
    """The nested `backbone` of a task model (a keras-hub `Task`: a functional
    subclass built around `model.backbone`, with a `preprocessor`), or `None`."""
    backbone = getattr(model, "backbone", None)
    if (
        not isinstance(backbone, keras.Model)
        or not hasattr(model, "preprocessor")
        or has_own_graph_config(model)
        or not any(layer is backbone for layer in model.layers)
    ):
        return None
    return backbone


def _rebuild_task(model: keras.Model, config: dict, configs: dict, input_widths):
    """A task rebuilt by its own class around its pruned backbone, so that it keeps
    its preprocessor and head (`ImageClassifier.predict` on raw images), or `None`
    when the task is not one or its own layers were edited (then it comes back as a
    plain Functional model, with a warning)."""
    backbone = _task_backbone(model)
    if backbone is None:
        return None
    prefix = backbone.name + "/"
    widths = [int(t.shape[-1]) for t in backbone.inputs]
    outside = [path for path in configs if not path.startswith(prefix)] + [
        path
        for path, new in input_widths.items()
        if not path.startswith(prefix) and not (path == backbone.name and new == widths)
    ]
    if outside:
        warnings.warn(
            f"'{model.name}' ({type(model).__name__}) is returned as a plain "
            f"functional keras.Model: its own layers {outside} changed, which its "
            "constructor cannot rebuild. Its preprocessor is not part of it; apply "
            "`model.preprocessor` to the data yourself, or exclude those layers.",
            FilterPruneWarning,
            stacklevel=4,
        )
        return None
    entry = next(e for e in config["layers"] if e["name"] == backbone.name)
    # from_config consumes the config: keep it for the plain functional fallback.
    new_backbone = _from_config(backbone, copy.deepcopy(entry["config"]))
    task_config = model.get_config()
    task_config["backbone"] = new_backbone  # the preprocessor is rebuilt from config
    try:
        task = type(model).from_config(task_config)
    except Exception as e:  # noqa: BLE001 - any task constructor may refuse it
        if not configs and not input_widths:  # nothing changed: a plain copy
            return None
        warnings.warn(
            f"'{model.name}' ({type(model).__name__}) is returned as a plain "
            "functional keras.Model: its constructor cannot be given the pruned "
            f"backbone ({type(e).__name__}: {str(e)[:120]}). Its preprocessor is "
            "not part of it; apply `model.preprocessor` to the data yourself.",
            FilterPruneWarning,
            stacklevel=4,
        )
        return None
    _restore_names(model, task)
    return task


def _restore_names(model: keras.Model, new_model: keras.Model) -> None:
    """Gives rebuilt layers their original names where a layer's `from_config`
    renames it (keras-hub's MobileNet blocks append `_0` on every construction):
    the pruned model keeps the layer names that plans and users refer to. The two
    graphs have the same structure, so their walks pair call by call."""
    if layers_by_path(model).keys() == layers_by_path(new_model).keys():
        return
    walk, new_walk = walk_model(model), walk_model(new_model)
    for old, new in zip(walk.calls, new_walk.calls, strict=True):
        if type(old.layer) is not type(new.layer):
            raise RuntimeError(
                f"Rebuilding '{model.name}' changed its structure at layer "
                f"'{old.path}'; please report this with the model."
            )
        new.layer.name = old.layer.name
    # Nested models and composite layers (a pruned composite is now a model).
    for old, new in zip(
        walk.containers.values(), new_walk.containers.values(), strict=True
    ):
        new.name = old.name


def _set_input_widths(config: dict, widths: list[int]) -> None:
    """Sets the channel count of a nested model's inputs (`widths` in the flat
    order of its `input_layers`)."""
    inputs = [e for e in config["layers"] if e["class_name"] == "InputLayer"]
    if "input_layers" in config:  # Functional (a Sequential has one input)
        entries = {e.get("name") or e["config"]["name"]: e for e in config["layers"]}
        inputs = [entries[name] for name, _, _ in io_refs(config["input_layers"])]
    for entry, width in zip(inputs, widths):
        shape = list(entry["config"]["batch_shape"])
        shape[-1] = width
        entry["config"]["batch_shape"] = shape
    if "build_input_shape" in config and config["build_input_shape"] and widths:
        shape = list(config["build_input_shape"])
        shape[-1] = widths[0]
        config["build_input_shape"] = shape


def set_weights(new_model: keras.Model, graph: ChannelGraph, weights: dict) -> None:
    """Sets every weighted layer of `new_model` from `weights[path]`, or from the
    same layer of the traced model when `weights` has no entry."""
    index = layers_by_path(new_model)
    for path, layer in graph.walk.layers.items():
        if not getattr(layer, "weights", None):
            continue  # stateless layers and Keras ops
        values = weights.get(path)
        target = index.get(path) or layer_by_path(new_model, path)
        target.set_weights(layer.get_weights() if values is None else values)
