"""Layers by path: `"backbone/block_1/conv"` names a layer inside nested models and
inside traced composite layers (`keras_filterprune._config.composite_graph`), the
same paths the walk, plans and masks use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import keras

from keras_filterprune._config import is_composite, is_subclassed
from keras_filterprune._inner import any_trace

__all__ = [
    "all_layers",
    "children",
    "layer_by_path",
    "layers_by_path",
    "resolve_layer_names",
]


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


def resolve_layer_names(
    paths: Iterable[str], names: Iterable[str] | None, arg: str
) -> dict[str, list[str]]:
    """Each name → the layer paths it means: the path itself, or every path
    whose last part is the name (`"conv1"` matches `"backbone/conv1"`).

    Args:
        paths: The model's layer paths.
        names: Layer names or paths as the user gave them (`None`: none).
        arg: The argument they came from, named in errors.

    Raises:
        ValueError: a name matches no layer; the message lists known layers.
    """
    paths = list(paths)
    by_short: dict[str, list[str]] = {}
    for p in paths:
        by_short.setdefault(p.rsplit("/", 1)[-1], []).append(p)
    known = set(paths)
    result = {}
    for name in names or ():
        matches = sorted(set(by_short.get(name, [])) | ({name} & known))
        if not matches:
            listed = sorted(known)
            more = " …" if len(listed) > 20 else ""
            raise ValueError(
                f"`{arg}` names layer '{name}', which is not in the model. Known "
                f"layers: {listed[:20]}{more}"
            )
        result[name] = matches
    return result
