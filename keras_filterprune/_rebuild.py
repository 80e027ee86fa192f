"""Rebuilding a model from its edited config and copying weights by layer path:
the mechanics surgery (`apply_plan`) and masking (`mask_model`) share."""

from __future__ import annotations

import copy

import keras

from keras_filterprune._validation import layer_by_path
from keras_filterprune.graph import ChannelGraph
from keras_filterprune.handlers import get_handler

__all__ = ["check_rebuildable", "rebuild", "set_weights", "layers_by_path"]


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


def _custom_objects(model: keras.Model) -> dict:
    """Users' own layer classes, so that unregistered ones rebuild too."""
    return {
        type(layer).__name__: type(layer)
        for layer in _all_layers(model)
        if not type(layer).__module__.startswith("keras.")
    }


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def rebuild(model: keras.Model, configs: dict, input_widths: dict) -> keras.Model:
    """A new model from `model`'s config with some layer configs replaced
    (`configs[path]`) and nested models' input widths changed."""
    config = copy.deepcopy(model.get_config())
    for path, entry in _layer_entries(config):
        entry.pop("build_config", None)
        if path in configs:
            entry["config"] = configs[path]
        if path in input_widths:
            _set_input_widths(entry["config"], input_widths[path])
    with keras.saving.custom_object_scope(_custom_objects(model)):
        return type(model).from_config(config)


def _set_input_widths(config: dict, widths: list[int]) -> None:
    """Sets the channel count of a nested model's inputs."""
    inputs = [e for e in config["layers"] if e["class_name"] == "InputLayer"]
    for entry, width in zip(inputs, widths):
        shape = list(entry["config"]["batch_shape"])
        shape[-1] = width
        entry["config"]["batch_shape"] = shape
    if "build_input_shape" in config and config["build_input_shape"] and widths:
        shape = list(config["build_input_shape"])
        shape[-1] = widths[0]
        config["build_input_shape"] = shape


def layers_by_path(model: keras.Model, prefix: str = "", index=None) -> dict:
    """Every layer of `model` by path (`get_layer` is a linear scan: calling it for
    each of n layers is O(n²), seconds for NASNet)."""
    index = {} if index is None else index
    for layer in model.layers:
        index.setdefault(prefix + layer.name, layer)
        if isinstance(layer, keras.Model):
            layers_by_path(layer, prefix + layer.name + "/", index)
    return index


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
