"""A flat copy of a model with nested models inlined: one Functional graph whose
every layer is top level, so that active criteria can read (and differentiate
with respect to) the outputs of layers inside a keras-hub backbone or any other
nested model.

The copy is made from graph configs only, with public API: nested
models' layers are renamed `"<model>__<layer>"`, their input layers are replaced by
the tensors the outer graph passes in, and references to their outputs by the
inner tensors. Weights are copied by layer path; the original is never touched.
"""

from __future__ import annotations

import copy
import re

import keras

from keras_filterprune._config import io_refs, plain_config, tensor_refs
from keras_filterprune._paths import layers_by_path
from keras_filterprune._rebuild import custom_objects

__all__ = ["flat_model"]

_SEP = "__"


def _is_model_entry(entry: dict) -> bool:
    return entry["class_name"] == "Functional" and "layers" in entry.get("config", {})


class _Inliner:
    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.alias: dict[tuple, tuple] = {}  # qualified ref -> qualified ref
        self.paths: dict[str, str] = {}  # layer path -> flat name

    def inline(self, config: dict, prefix: str, path: str, outer: list | None):
        """Adds the layers of one (nested) model; returns its output refs."""
        inputs = io_refs(config["input_layers"])
        if outer is not None:
            for ref, new in zip(inputs, outer, strict=True):
                self.alias[(prefix + ref[0], ref[1], ref[2])] = new
        for entry in config["layers"]:
            name = entry["name"]
            if outer is not None and entry["class_name"] == "InputLayer":
                continue
            if _is_model_entry(entry):
                nodes = entry["inbound_nodes"]
                for k, node in enumerate(nodes):
                    refs = [self._qualify(r, prefix) for r in tensor_refs(node)]
                    inner = (
                        prefix + name + _SEP + (f"{k}{_SEP}" if len(nodes) > 1 else "")
                    )
                    inner_path = path + name + ("/" if len(nodes) == 1 else f"@{k}/")
                    outs = self.inline(entry["config"], inner, inner_path, refs)
                    for t, out in enumerate(outs):
                        self.alias[(prefix + name, k, t)] = out
                continue
            entry = copy.deepcopy(entry)
            entry["name"] = prefix + name
            entry["config"]["name"] = prefix + name
            entry.pop("build_config", None)
            for node in entry.get("inbound_nodes", []):
                for ref in tensor_refs(node):
                    ref["keras_history"] = list(self._qualify(ref, prefix))
            self.entries.append(entry)
            self.paths.setdefault(path + name, prefix + name)
        functional = {
            e["name"] for e in config["layers"] if e["class_name"] == "Functional"
        }  # Keras numbers their nodes from 1 in `output_layers`
        return [
            (prefix + r[0], r[1] - (r[0] in functional), r[2])
            for r in io_refs(config["output_layers"])
        ]

    @staticmethod
    def _qualify(ref: dict, prefix: str) -> tuple:
        name, node, tensor = ref["keras_history"]
        return (prefix + name, node, tensor)

    def resolve(self, ref) -> list:
        ref = tuple(ref)
        seen = set()
        while ref in self.alias and ref not in seen:
            seen.add(ref)
            ref = tuple(self.alias[ref])
        return list(ref)


def flat_model(model: keras.Model) -> tuple[keras.Model, dict[str, str]]:
    """A flat copy of `model` (nested models inlined) and, for every layer path
    of `model` (`"backbone/conv1"`), the name of its copy in the flat model.

    A nested model called several times has one copy per call; the paths of its
    layers are then `"backbone@<k>/conv1"` and active criteria refuse them (a
    shared layer has no single output).
    """
    inliner = _Inliner()
    config = plain_config(model, sequential_as_graph=True, expand=lambda path: True)
    outputs = inliner.inline(config, "", "", None)
    for entry in inliner.entries:
        for node in entry.get("inbound_nodes", []):
            for ref in tensor_refs(node):
                ref["keras_history"] = inliner.resolve(ref["keras_history"])
    flat = {
        "name": model.name + "_flat",
        "trainable": config.get("trainable", True),
        "layers": inliner.entries,
        "input_layers": config["input_layers"],
        "output_layers": [inliner.resolve(r) for r in outputs],
    }
    if len({e["name"] for e in inliner.entries}) != len(inliner.entries):
        raise ValueError(
            f"Model '{model.name}' cannot be flattened for active scoring: two "
            f"layers would share a name (names joined with '{_SEP}')."
        )
    with keras.saving.custom_object_scope(custom_objects(model)):
        new = keras.Model.from_config(flat)
    originals = layers_by_path(model)
    copies = {layer.name: layer for layer in new.layers}
    for path, name in inliner.paths.items():
        layer = originals.get(re.sub(r"@\d+/", "/", path))  # each call's copy
        if layer is not None and layer.weights:
            copies[name].set_weights(layer.get_weights())
    return new, inliner.paths
