"""The traced models, remembered: one owner of "trace once".

`keras_filterprune.graph.graph_of` traces a model on first use and keeps the
`ChannelGraph` here, weakly (the entry goes with the model), keyed by the layers
and input shapes it was traced from. Every function given a model asks
`graph_of`, so a workflow walks a model once; `profile_model` reads the trace
here when there is one. A leaf module (no package import), so that `profile`,
which `graph` imports, can read it too.
"""

from __future__ import annotations

import weakref

__all__ = ["forget", "remember", "remembered"]

_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tracked_layers(model) -> list:
    """Every layer tracked inside `model`, nested ones included (Keras' own
    recursive walk; the top-level layers where it is missing)."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return list(getattr(model, "layers", ()))
    return list(flatten(include_self=False, recursive=True))


def _structure(model, version: int) -> tuple:
    """What a trace depends on that can change on a live model: every layer
    object inside it, nested models and sub-layers included (`Sequential.add` on
    a nested model, a reassigned attribute of a subclassed model), each layer's
    activation (a layer given a channel-mixing softmax is frozen), its input
    shapes, and the handler registry (`version`). Weights, names and trainable
    flags never change a trace; other in-place config edits of a built layer are
    not seen (`keras_filterprune.graph.forget_trace(model)` after one)."""
    try:
        inputs = model.inputs or ()
    except (AttributeError, ValueError):  # a subclassed model has no inputs
        inputs = ()
    shapes = tuple(str(getattr(x, "shape", None)) for x in inputs)
    layers = tuple(
        (id(layer), id(getattr(layer, "activation", None)))
        for layer in _tracked_layers(model)
    )
    return layers, shapes, version


def remembered(model, version: int):
    """The graph traced from `model` in its current structure with the handler
    registry at `version` (`handlers.registry_version()`), or `None`."""
    try:
        entry = _TRACES.get(model)
    except TypeError:  # not weakly referenceable: not a model, never traced
        return None
    if entry is None or entry[0] != _structure(model, version):
        return None
    return entry[1]


def remember(model, graph, version: int) -> None:
    """Keeps `graph` as the trace of `model` (while `model` lives)."""
    try:
        _TRACES[model] = (_structure(model, version), graph)
    except TypeError:
        pass


def forget(model) -> None:
    """Drops the remembered trace of `model` (traced again on next use)."""
    try:
        _TRACES.pop(model, None)
    except TypeError:
        pass
