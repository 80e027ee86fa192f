"""Layers by path: `"backbone/block_1/conv"` names a layer inside nested models and
inside traced composite layers (`keras_filterprune._config.composite_graph`), the
same paths the walk, plans and masks use."""

from __future__ import annotations

from collections.abc import Iterator

import keras

from keras_filterprune._config import is_composite, is_subclassed
from keras_filterprune._inner import any_trace

__all__ = ["all_layers", "children", "layer_by_path", "layers_by_path"]


def children(layer) -> list:
    """The layers directly inside `layer`: a model's layers, or the sub-layers its
    traced graph calls (a composite layer, a subclassed model); `[]` otherwise."""
    if isinstance(layer, keras.Model) and not is_subclassed(layer):
        return list(layer.layers)
    if not is_composite(layer):
        return []
    inner = any_trace(layer)  # any trace names the same sub-layers
    if isinstance(inner, keras.Model):
        return list(inner.layers)
    return list(getattr(layer, "layers", []))  # an untraceable subclassed model


def all_layers(model) -> Iterator[keras.layers.Layer]:
    """Every layer inside `model`, depth first."""
    for layer in children(model):
        yield layer
        yield from all_layers(layer)


def layers_by_path(model: keras.Model, prefix: str = "", index=None) -> dict:
    """Every layer of `model` by path (`get_layer` is a linear scan: calling it for
    each of n layers is O(n²), seconds for NASNet)."""
    index = {} if index is None else index
    for layer in children(model):
        index.setdefault(prefix + layer.name, layer)
        layers_by_path(layer, prefix + layer.name + "/", index)
    return index


def layer_by_path(model, path: str):
    """The layer at `path` (`"nested_model/layer"`) of `model`.

    Raises:
        ValueError: no layer has that path.
    """
    obj = model
    for part in path.split("/"):
        found = next((layer for layer in children(obj) if layer.name == part), None)
        if found is None:
            raise ValueError(f"No layer '{path}' in model '{model.name}'.")
        obj = found
    return obj
