"""Model inputs as feeds: `{input name: array}` dicts from representative data,
random verification inputs, and the Keras outputs on them. Shared by the
exporters (`keras_filterprune.export`), the benchmarks, `compare_models` and
latency measuring."""

from __future__ import annotations

import logging
import os
from typing import Any

import keras
import numpy as np

__all__ = [
    "MAX_SAMPLES",
    "element_to_feed",
    "feed_from_data",
    "input_names",
    "input_tensors",
    "keras_inputs",
    "keras_outputs",
    "random_feed",
    "samples",
    "signature_names",
    "verification_feed",
]

logger = logging.getLogger(__name__)

MAX_SAMPLES = 500  # representative samples kept (TF advises a few hundred)


def input_tensors(model: keras.Model) -> list:
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} has no defined inputs (a subclassed model?). Wrap "
            "it in a functional model: `inp = keras.Input(shape); "
            "keras.Model(inp, model(inp))`."
        )
    return list(inputs)


def input_names(model: keras.Model) -> list[str]:
    return [t.name for t in input_tensors(model)]


def keras_inputs(model: keras.Model, feed: dict[str, np.ndarray]) -> Any:
    """Arranges `{input name: array}` in the structure `model` is called with."""
    inputs = input_tensors(model)
    try:
        struct = model.input
    except (AttributeError, ValueError):
        struct = inputs[0] if len(inputs) == 1 else inputs
    return keras.tree.map_structure(lambda t: feed[t.name], struct)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def element_to_feed(
    element: Any, model: keras.Model, arg: str = "representative_data"
) -> dict[str, np.ndarray]:
    """One element of `arg` (a batch or one sample) → `{name: batch array}`.

    Checked against the model's inputs: numbers (not strings or objects), the
    rank and every known dimension, finite values; each error names `arg`."""
    tensors = input_tensors(model)
    names = [t.name for t in tensors]
    if isinstance(element, dict):
        missing = [n for n in names if n not in element]
        if missing:
            raise ValueError(
                f"`{arg}` has keys {sorted(element)}; the model's inputs are "
                f"{names} (missing {missing})."
            )
        arrays = [element[n] for n in names]
    elif isinstance(element, (list, tuple)):
        if element and not _is_array(element[0]):  # (inputs, targets[, weights])
            return element_to_feed(element[0], model, arg)
        if len(names) == 1:  # [x] or (x, y) or (x, y, w)
            arrays = [element[0]]
        elif len(element) == len(names):
            arrays = list(element)
        else:
            raise ValueError(
                f"`{arg}` has {len(element)} arrays; the model has {len(names)} "
                f"inputs {names}. Give one array per input, or a dict."
            )
    elif _is_array(element) and len(names) == 1:
        arrays = [element]
    elif _is_array(element):
        raise ValueError(
            f"`{arg}` is one array; the model has {len(names)} inputs {names}. "
            "Give one array per input (a list), or a dict {input name: array}."
        )
    else:
        raise TypeError(
            f"`{arg}` must hold arrays (or lists or dicts of arrays) for a model "
            f"with inputs {names}. Received an element of type "
            f"{type(element).__name__}."
        )
    feed = {}
    for tensor, arr in zip(tensors, arrays, strict=True):
        raw = np.asarray(arr)
        if raw.dtype.kind not in "biuf":
            raise TypeError(
                f"`{arg}` for input {tensor.name!r} must be numbers. Received an "
                f"array of dtype {raw.dtype}."
            )
        arr = raw.astype(keras.backend.standardize_dtype(tensor.dtype), copy=False)
        if arr.ndim == len(tensor.shape) - 1:
            arr = arr[None]  # one unbatched sample
        expected = tuple(tensor.shape)
        if arr.ndim != len(expected) or any(
            want is not None and got != want
            for got, want in zip(arr.shape[1:], expected[1:])
        ):
            raise ValueError(
                f"`{arg}` for input {tensor.name!r} has shape {raw.shape}; the "
                f"model expects {expected} (a batch) or {expected[1:]} (one example)."
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"`{arg}` for input {tensor.name!r} holds NaN or Inf: give finite "
                "inputs (they calibrate or check the exported model)."
            )
        feed[tensor.name] = arr
    return feed


def samples(
    data: Any, model: keras.Model, arg: str = "representative_data"
) -> list[dict[str, np.ndarray]]:
    """Splits representative data into at most `MAX_SAMPLES` batch-1 feeds."""
    names = input_names(model)
    if callable(data):  # TF's own `representative_dataset` convention
        data = data()
    if isinstance(data, (str, bytes, os.PathLike)):
        raise TypeError(
            f"`{arg}` must be data (an array, a dataset, ...), not a path: load "
            f"the file first (e.g. np.load). Received: {arg}={data!r}"
        )
    if _is_array(data) or isinstance(data, dict):
        elements: Any = [data]
    elif (
        isinstance(data, (list, tuple))
        and len(names) > 1
        and len(data) == len(names)
        and all(_is_array(d) for d in data)
    ):
        elements = [data]  # one batch of a multi-input model
    else:
        try:
            elements = iter(data)
        except TypeError:
            raise TypeError(
                f"`{arg}` must be an array, a list/tuple/dict of arrays, an "
                "iterable or tf.data.Dataset of inputs, or a generator function. "
                f"Received: {type(data).__name__}"
            ) from None
    kept: list[dict[str, np.ndarray]] = []
    for element in elements:
        feed = element_to_feed(element, model, arg)
        n = len(next(iter(feed.values())))
        for i in range(n):
            kept.append({k: v[i : i + 1] for k, v in feed.items()})
            if len(kept) >= MAX_SAMPLES:
                logger.info("Using the first %d representative samples.", MAX_SAMPLES)
                return kept
    if not kept:
        raise ValueError(f"`{arg}` is empty.")
    return kept


def random_feed(model: keras.Model, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for t in input_tensors(model):
        shape = (batch, *t.shape[1:])
        if any(d is None for d in shape):
            raise ValueError(
                f"Input {t.name!r} has unknown dimensions {tuple(t.shape)}, so no "
                "random inputs can be made: pass example inputs "
                "(`representative_data=` / `inputs=`) or `verify=False`."
            )
        dtype = keras.backend.standardize_dtype(t.dtype)
        if "int" in dtype:
            feed[t.name] = rng.integers(0, 10, size=shape).astype(dtype)
        elif dtype == "bool":
            feed[t.name] = rng.random(shape) < 0.5
        else:
            feed[t.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def verification_feed(model, num_verify, samples) -> dict[str, np.ndarray]:
    if not samples:
        return random_feed(model, num_verify)
    chosen = samples[:num_verify]
    return {k: np.concatenate([s[k] for s in chosen]) for k in chosen[0]}


def feed_from_data(model, verify, num_verify, data) -> dict[str, np.ndarray] | None:
    """The verification feed from representative `data` (random inputs without
    it); `None` when not verifying."""
    if not verify:
        return None
    data_samples = None if data is None else samples(data, model)
    return verification_feed(model, num_verify, data_samples)


def keras_outputs(model: keras.Model, feed: dict) -> list[np.ndarray]:
    out = model(keras_inputs(model, feed), training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(out)]


def signature_names(model: keras.Model, signature_inputs: Any) -> dict[str, str]:
    """Maps Keras input names to signature input names (normally the same)."""
    keras_names = input_names(model)
    sig_names = list(signature_inputs)
    if set(keras_names) == set(sig_names):
        return {n: n for n in keras_names}
    if len(keras_names) == len(sig_names) == 1:
        return {keras_names[0]: sig_names[0]}
    raise RuntimeError(
        f"Cannot match the model inputs {keras_names} to the exported signature "
        f"inputs {sig_names}; give the keras.Input layers unique plain names."
    )
