"""Recovering accuracy after pruning: BatchNorm recalibration.

Removing filters changes what every later BatchNormalization sees, so the moving
statistics stored during training no longer match and a pruned model can collapse
to one class until they are re-estimated. `recalibrate_batchnorm` re-estimates them
from a few unlabeled batches (no training). Fine-tuning the pruned model against
the unpruned one (`Distiller`) lives in `distillation.py`.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from keras_filterprune._paths import all_layers
from keras_filterprune._validation import check_int
from keras_filterprune.handlers import get_handler

__all__ = ["recalibrate_batchnorm"]

_NOISE_ATTRIBUTES = ("rate", "stddev")  # Dropout family, GaussianNoise


def _first_input(element: Any) -> Any:
    """`x` of an element that may be `(x,)`, `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(element, tuple) and 1 <= len(element) <= 3:
        return element[0]
    return element


def _batches(data: Any, batch_size: int) -> Iterator[Any]:
    """Input batches of an array, a dict of arrays, `(x, y)` arrays, a
    `tf.data.Dataset`, a `keras.utils.PyDataset`, an iterable or a generator."""
    data = _first_input(data)
    arrays = keras.tree.flatten(data) if isinstance(data, (dict, list)) else [data]
    if arrays and all(hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays):
        n = len(arrays[0])
        for start in range(0, n, batch_size):
            yield keras.tree.map_structure(
                lambda a, start=start: np.asarray(a[start : start + batch_size]), data
            )
        return
    if isinstance(data, (str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            "`data` must be an array (or a dict/list of arrays, or (x, y) arrays), "
            "a tf.data.Dataset, a keras.utils.PyDataset or an iterable of batches. "
            f"Received: data of type {type(data).__name__}"
        )
    for element in data:
        yield _first_input(element)


def _num_batches(data: Any, batch_size: int, steps: int | None) -> int | None:
    """How many batches `_batches` will yield (at most `steps`), when known."""
    data = _first_input(data)
    arrays = keras.tree.flatten(data) if isinstance(data, (dict, list)) else [data]
    total = None
    if arrays and all(hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays):
        total = -(-len(arrays[0]) // batch_size)
    else:
        try:  # a PyDataset, a finite tf.data.Dataset, a list of batches
            total = len(data)
        except TypeError:  # a generator, an infinite or unknown-size dataset
            pass
    if total is None:
        return steps
    return total if steps is None else min(total, steps)


def has_statistics(layer: Any) -> bool:
    """Whether the handler of `layer` says it keeps running statistics (the
    layers `recalibrate_batchnorm` re-estimates)."""
    handler = get_handler(layer)
    return handler is not None and bool(handler.statistics_weights(layer))


def _check_verbose(verbose: Any) -> int:
    """Keras' `verbose` of `predict`: `"auto"` (= 1), 0, 1 or 2."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
        raise TypeError(
            f'`verbose` must be "auto", 0, 1 or 2. Received: verbose={verbose!r}'
        )
    if verbose not in (0, 1, 2):
        raise ValueError(
            f'`verbose` must be "auto", 0, 1 or 2. Received: verbose={verbose}'
        )
    return int(verbose)


def recalibrate_batchnorm(
    model: keras.Model,
    data: Any,
    *,
    steps: int | None = None,
    batch_size: int = 32,
    verbose: int | str = 0,
) -> int:
    """Re-estimates the moving statistics of every BatchNormalization layer.

    The model runs on `data` in training mode with no weight update; the momentum
    of batch `k` (0-based) is set to `k / (k + 1)`, so each moving mean and
    variance becomes the plain average of the batch statistics. The layers are
    those whose handler declares running statistics
    (`LayerHandler.statistics_weights`); nested models are included. Dropout and
    noise layers are silenced meanwhile (their training-mode noise would bias the
    statistics of the layers after them), and every momentum and rate is restored
    afterwards, also on failure. No other weight changes.

    Args:
        model: A `keras.Model`. Modified in place (its moving statistics only).
        data: Unlabeled inputs: an array (or dict/list of arrays, or `(x, y)`
            arrays, of which `x` is used) cut into batches of `batch_size`, or a
            `tf.data.Dataset`, `keras.utils.PyDataset`, iterable or generator of
            batches (elements `x`, `(x, y)` or `(x, y, w)`). A few hundred
            examples are enough.
        steps: `int`. Use at most this many batches. Defaults to `None` (all).
        batch_size: `int`. Batch size for array data. Defaults to `32`.
        verbose: `"auto"`, 0, 1 or 2, as in `Model.predict`: 0 = silent, 1 =
            a `keras.utils.Progbar` over the batches, 2 = one line when done;
            `"auto"` is 1. Defaults to `0` (silent: `apply_plan` and
            `sensitivity_analysis` call this function inside their own loops).

    Returns:
        `int`: the number of batches used (0 when the model has no
        BatchNormalization; then nothing runs).

    Raises:
        TypeError: `model` is not a Keras model, `data` is not data, or a bad
            type of `steps`/`batch_size`/`verbose`.
        ValueError: `data` yields no batch, or bad `steps`/`batch_size`/`verbose`.

    Example:

    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                           keras.layers.BatchNormalization()])
    >>> x = np.random.default_rng(0).normal(2.0, 1.0, (64, 4)).astype("float32")
    >>> recalibrate_batchnorm(model, x, batch_size=16)
    4
    >>> bn = model.layers[-1]
    >>> means = [np.mean(model.layers[0](x[i:i + 16]).numpy(), axis=0)
    ...          for i in range(0, 64, 16)]
    >>> bool(np.allclose(bn.moving_mean.numpy(), np.mean(means, axis=0), atol=1e-5))
    True

    References:
        - Li et al., "Revisiting Batch Normalization For Practical Domain
          Adaptation" (AdaBN), 2016; Li et al., "EagleEye: Fast Sub-net
          Evaluation for Efficient Neural Network Pruning", ECCV 2020.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be a keras.Model. Received: {type(model).__name__}"
        )
    if steps is not None:
        check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    verbose = _check_verbose(verbose)
    layers = list(all_layers(model))
    norms = [layer for layer in layers if has_statistics(layer)]
    if not norms:
        return 0
    noisy = [
        (layer, name, getattr(layer, name))
        for layer in layers
        if not has_statistics(layer)
        for name in _NOISE_ATTRIBUTES
        if isinstance(getattr(layer, name, None), (int, float))
    ]
    for layer in norms:
        if not isinstance(getattr(layer, "momentum", None), (int, float)):
            raise TypeError(
                f"Layer '{layer.name}' ({type(layer).__name__}) has running "
                "statistics (its handler's `statistics_weights`) but no numeric "
                "`momentum` to re-estimate them with: give the layer a `momentum`, "
                "or a handler that declares no statistics."
            )
    momenta = [layer.momentum for layer in norms]
    # Every variable of the BatchNorm layers, restored on any failure, so that a
    # batch of NaN or a generator that breaks halfway leaves the model as it was.
    saved = [(v, keras.ops.convert_to_numpy(v)) for n in norms for v in n.variables]
    used = 0
    progbar = None
    if verbose:
        target = _num_batches(data, batch_size, steps)
        progbar = keras.utils.Progbar(target, verbose=verbose, unit_name="step")
    try:
        for layer, name, _ in noisy:
            setattr(layer, name, 0.0)
        batches = _batches(data, batch_size)
        for k, x in enumerate(itertools.islice(batches, steps)):
            _check_finite_batch(x, k)
            _check_batch_fits(model, x, k)
            for layer in norms:
                layer.momentum = k / (k + 1)
            _run_batch(model, x, k)
            used = k + 1
            if progbar is not None:
                progbar.update(used, finalize=False)
        if progbar is not None and used:
            progbar.target = progbar.target or used  # as Keras' ProgbarLogger
            progbar.update(used, finalize=True)
        _check_finite_statistics(norms)
    except BaseException:
        for variable, value in saved:
            variable.assign(value)
        raise
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
        for layer, name, value in noisy:
            setattr(layer, name, value)
    if not used:
        raise ValueError(
            "The calibration `data` yielded no batch: pass at least one example."
        )
    return used


def input_structure(model: keras.Model) -> Any:
    """The model's inputs (KerasTensors, in their structure), or `None` when
    they are not known before a call (a subclassed model)."""
    try:
        return model.input
    except (AttributeError, ValueError):
        pass
    try:  # a Sequential with an Input never called: `input` fails, `inputs` not
        return list(model.inputs) or None
    except (AttributeError, ValueError, TypeError):
        return None


def _shape_text(shape: Any) -> str:
    return str(tuple(None if d is None else int(d) for d in shape))


def _check_batch_fits(model: keras.Model, x: Any, k: int) -> None:
    """Raises a ValueError naming batch `k` of the calibration data when its
    structure, dtypes or shapes cannot feed the model's inputs (checked here,
    before Keras or the backend fail deep inside the model)."""
    expected = input_structure(model)
    if expected is None:
        return
    if isinstance(expected, (list, tuple)) and len(expected) == 1:
        expected = expected[0]
    if isinstance(x, (list, tuple)) and len(x) == 1 and not isinstance(expected, list):
        x = x[0]
    where = f"The calibration `data` batch {k} (0-based)"
    if isinstance(expected, dict) and isinstance(x, dict):
        missing = sorted(set(expected) - set(x))
        extra = sorted(set(x) - set(expected))
        if missing:  # extra keys: Keras warns and ignores them
            raise ValueError(
                f"{where} is a dict with keys {sorted(x)} but model '{model.name}' "
                f"takes the inputs {sorted(expected)}"
                + (f" (missing: {missing})" if missing else "")
                + (f" (unknown: {extra})" if extra else "")
                + ". Name each array after its model input."
            )
        pairs = [(repr(key), x[key], expected[key]) for key in sorted(expected)]
    elif isinstance(expected, (list, tuple)) and isinstance(x, (list, tuple)):
        if len(x) != len(expected):
            raise ValueError(
                f"{where} holds {len(x)} arrays but model '{model.name}' takes "
                f"{len(expected)} inputs. Pass one array per input, in order."
            )
        pairs = [(str(i), a, t) for i, (a, t) in enumerate(zip(x, expected))]
    elif not isinstance(expected, (dict, list, tuple)) and not isinstance(
        x, (dict, list, tuple)
    ):
        pairs = [("", x, expected)]
    else:
        return  # another structure: Keras decides (errors are named by _run_batch)
    lengths = set()
    for label, array, spec in pairs:
        shape = getattr(array, "shape", None)
        dtype = getattr(array, "dtype", None)
        if shape is None or dtype is None:
            continue
        input_text = f"input {label} " if label else "input "
        try:
            kind = np.dtype(keras.backend.standardize_dtype(dtype)).kind
        except (TypeError, ValueError):  # "string" and other non-NumPy dtypes
            kind = "O"
        if kind not in "biuf":
            raise ValueError(
                f"{where} feeds the model's {input_text}an array of dtype {dtype}: "
                "calibration data must be numbers (the model's inputs, "
                "preprocessed as in training)."
            )
        shape = tuple(shape)
        want = tuple(spec.shape)
        fits = len(shape) == len(want) and all(
            w is None or s is None or int(s) == int(w)
            for s, w in zip(shape[1:], want[1:])
        )
        if not fits:
            raise ValueError(
                f"{where} has shape {_shape_text(shape)} but model '{model.name}' "
                f"takes its {input_text}of shape {_shape_text(want)} (the first "
                "axis is the batch). Pass examples shaped like the model's input."
            )
        if shape and shape[0] is not None:
            lengths.add(int(shape[0]))
    if len(lengths) > 1:
        raise ValueError(
            f"{where} holds arrays of different lengths {sorted(lengths)}: every "
            "input needs the same number of examples."
        )


def _run_batch(model: keras.Model, x: Any, k: int) -> None:
    """Calls the model in training mode; a failure names batch `k` of the
    calibration data (the model's own error follows, shortened)."""
    try:
        model(x, training=True)
    except (ValueError, TypeError) as e:
        raise type(e)(_batch_failed(model, k, e)) from e
    except Exception as e:  # noqa: BLE001 - a backend's shape error, named
        if type(e).__name__ != "InvalidArgumentError":
            raise  # out of memory, interrupted, …: not the data's fault
        raise ValueError(_batch_failed(model, k, e)) from e


def _batch_failed(model: keras.Model, k: int, error: Exception) -> str:
    detail = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
    detail = detail if len(detail) <= 300 else detail[:297] + "..."
    return (
        f"The calibration `data` batch {k} (0-based) could not be fed to model "
        f"'{model.name}': check that it holds the model's inputs (shapes, dtypes, "
        f"names). The model was left as it was. ({type(error).__name__}: {detail})"
    )


def _check_finite_batch(x: Any, k: int) -> None:
    """Raises a ValueError naming batch `k` when it holds NaN or Inf."""
    for array in keras.tree.flatten(x):
        try:
            value = keras.ops.convert_to_numpy(array)
        except Exception:  # noqa: BLE001 - strings etc.: the model will say
            continue
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise ValueError(
                f"The calibration `data` batch {k} (0-based) holds NaN or Inf "
                "values: BatchNorm statistics estimated from it would be NaN and "
                "every output with them. Clean the data (e.g. `np.nan_to_num`) or "
                "leave those examples out. The model was left as it was."
            )


def _check_finite_statistics(norms) -> None:
    for layer in norms:
        for variable in layer.non_trainable_variables:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
                raise ValueError(
                    f"Recalibration gave non-finite statistics in layer "
                    f"'{layer.name}' (`{variable.name}`): the data overflow the "
                    "model (check its scale, e.g. images in [0, 1] as in "
                    "training). The model was left as it was."
                )
