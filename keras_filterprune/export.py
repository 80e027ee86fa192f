"""Export pruned models as .keras, SavedModel and TFLite, each checked against Keras.

Every export checks its own output against the Keras model before the file is put in
place, and reports the largest absolute difference in an `ExportReport`. Files are
written to a hidden temporary name in the target directory and moved into place with
`os.replace` (a directory with `os.rename`) only when writing and checking succeeded,
so a failed export never leaves a partial file behind.

TFLite conversion goes Keras `model.export(..., format="tf_saved_model")` →
`tf.lite.TFLiteConverter.from_saved_model`, with TFLite builtin ops only. This is the
path `TFLiteConverter.from_keras_model` takes internally for Keras 3 models (same
flatbuffer), but it prints nothing, keeps the Keras input names as the signature
names (so multi-input models and representative data are fed by name), and unlike
Keras' own `format="litert"` export it does not silently fall back to TF Select ops
that edge runtimes cannot run.

Verification tolerances are `atol + rtol * R`, with `R` the peak-to-peak range of the
Keras outputs on the verification inputs (see `TOLERANCES`). TFLite files are
checked in LiteRT with `keras_filterprune.runtime`, which also runs and times them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from keras_filterprune.exceptions import FilterPruneWarning

__all__ = [
    "ExportReport",
    "TOLERANCES",
    "export_saved_model",
    "export_tflite",
    "save_keras",
]

logger = logging.getLogger(__name__)

QUANTIZATIONS = (None, "float16", "dynamic", "int8")

#: `(atol, rtol)` per export; tolerance = `atol + rtol * R` (R = output range).
#: fp32 exports only reorder float sums. float16 rounds weights to 11 significant
#: bits (relative error <= 2**-11 ~ 5e-4 each; measured 1-2e-4 R). dynamic stores
#: int8 weights and quantises activations per batch on the fly (measured 0.1-0.6 % R).
#: int8 quantises every activation to 256 levels calibrated on representative data,
#: errors compound per layer (measured 0.5-0.7 % R on 2- and 8-conv nets). Each bound
#: leaves >= 10x margin over what was measured and still catches a wrong or missing
#: channel, which moves outputs by O(R).
TOLERANCES: dict[str | None, tuple[float, float]] = {
    "keras": (1e-4, 1e-5),
    "saved_model": (1e-4, 1e-5),
    None: (1e-4, 1e-5),
    "float16": (1e-3, 1e-2),
    "dynamic": (1e-3, 5e-2),
    "int8": (1e-3, 1e-1),
}

_MAX_SAMPLES = 500  # representative samples kept (TF advises a few hundred)
_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".pb", ".onnx", ".zip")


# ----------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how closely it matches the Keras model.

    Attributes:
        path: `str`. The file (or SavedModel directory) written.
        format: `str`. `"keras"`, `"saved_model"` or `"tflite"`.
        size_bytes: `int`. Size on disk (all files of a SavedModel).
        quantization: `str` or `None`. TFLite quantization, `None` for float32.
        max_abs_diff: `float` or `None`. Largest absolute output difference against
            the Keras model; `None` when `verify=False`.
        tolerance: `float` or `None`. The bound `max_abs_diff` was checked against.
        passed: `bool` or `None`. Whether `max_abs_diff <= tolerance`.
        seconds: `float`. Wall time of the export, verification included.
    """

    path: str
    format: str
    size_bytes: int
    quantization: str | None
    max_abs_diff: float | None
    tolerance: float | None
    passed: bool | None
    seconds: float

    def __str__(self) -> str:
        kind = self.format + (f" ({self.quantization})" if self.quantization else "")
        if self.passed is None:
            check = "not verified"
        else:
            verdict = "ok" if self.passed else "FAILED"
            check = (
                f"max|diff| {self.max_abs_diff:.3g} <= {self.tolerance:.3g} {verdict}"
            )
        return (
            f"{kind} {self.path}: {self.size_bytes / 1024:.1f} KiB, {check}, "
            f"{self.seconds:.2f} s"
        )


# ----------------------------------------------------------------------------------
# Inputs: names, representative data, random verification inputs
# ----------------------------------------------------------------------------------
def _input_tensors(model: keras.Model) -> list:
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


def _input_names(model: keras.Model) -> list[str]:
    return [t.name for t in _input_tensors(model)]


def _keras_inputs(model: keras.Model, feed: dict[str, np.ndarray]) -> Any:
    """Arranges `{input name: array}` in the structure `model` is called with."""
    inputs = _input_tensors(model)
    try:
        struct = model.input
    except (AttributeError, ValueError):
        struct = inputs[0] if len(inputs) == 1 else inputs
    return keras.tree.map_structure(lambda t: feed[t.name], struct)


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _element_to_feed(element: Any, model: keras.Model) -> dict[str, np.ndarray]:
    """One representative element (a batch or one sample) → `{name: batch array}`."""
    tensors = _input_tensors(model)
    names = [t.name for t in tensors]
    if isinstance(element, dict):
        missing = [n for n in names if n not in element]
        if missing:
            raise ValueError(
                f"Representative element has keys {sorted(element)}; the model's "
                f"inputs are {names} (missing {missing})."
            )
        arrays = [element[n] for n in names]
    elif isinstance(element, (list, tuple)):
        if element and not _is_array(element[0]):  # (inputs, targets[, weights])
            return _element_to_feed(element[0], model)
        if len(names) == 1:  # [x] or (x, y) or (x, y, w)
            arrays = [element[0]]
        elif len(element) == len(names):
            arrays = list(element)
        else:
            raise ValueError(
                f"Representative element has {len(element)} arrays; the model has "
                f"{len(names)} inputs {names}. Yield one array per input, or a dict."
            )
    elif _is_array(element) and len(names) == 1:
        arrays = [element]
    else:
        raise ValueError(
            f"Cannot read a representative element of type {type(element).__name__} "
            f"for a model with inputs {names}: use arrays, lists or dicts of arrays."
        )
    feed = {}
    for tensor, arr in zip(tensors, arrays, strict=True):
        arr = np.asarray(arr, dtype=keras.backend.standardize_dtype(tensor.dtype))
        if arr.ndim == len(tensor.shape) - 1:
            arr = arr[None]  # one unbatched sample
        if arr.ndim != len(tensor.shape):
            raise ValueError(
                f"Representative data for input {tensor.name!r} has shape "
                f"{arr.shape}; the model expects {tuple(tensor.shape)}."
            )
        feed[tensor.name] = arr
    return feed


def _samples(data: Any, model: keras.Model) -> list[dict[str, np.ndarray]]:
    """Splits representative data into at most `_MAX_SAMPLES` batch-1 feeds."""
    names = _input_names(model)
    if callable(data):  # TF's own `representative_dataset` convention
        data = data()
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
                "`representative_data` must be an array, a list/tuple/dict of arrays, "
                "an iterable or tf.data.Dataset of inputs, or a generator function. "
                f"Received: {type(data).__name__}"
            ) from None
    samples: list[dict[str, np.ndarray]] = []
    for element in elements:
        feed = _element_to_feed(element, model)
        n = len(next(iter(feed.values())))
        for i in range(n):
            samples.append({k: v[i : i + 1] for k, v in feed.items()})
            if len(samples) >= _MAX_SAMPLES:
                logger.info("Using the first %d representative samples.", _MAX_SAMPLES)
                return samples
    if not samples:
        raise ValueError("`representative_data` is empty.")
    return samples


def _random_feed(model: keras.Model, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for t in _input_tensors(model):
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


def _verification_feed(model, num_verify, samples) -> dict[str, np.ndarray]:
    if not samples:
        return _random_feed(model, num_verify)
    chosen = samples[:num_verify]
    return {k: np.concatenate([s[k] for s in chosen]) for k in chosen[0]}


def _feed(model, verify, num_verify, data) -> dict[str, np.ndarray] | None:
    if not verify:
        return None
    samples = None if data is None else _samples(data, model)
    return _verification_feed(model, num_verify, samples)


def _keras_outputs(model: keras.Model, feed: dict) -> list[np.ndarray]:
    out = model(_keras_inputs(model, feed), training=False)
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(out)]


def _sorted_outputs(outputs: dict[str, Any]) -> list[np.ndarray]:
    """Signature outputs in Keras' flattening order (`output_0, output_1, …`)."""

    def key(name: str):
        m = re.fullmatch(r"output_(\d+)", name)
        return (0, int(m.group(1)), "") if m else (1, 0, name)

    return [np.asarray(outputs[k]) for k in sorted(outputs, key=key)]


def _compare(fmt, reference, outputs, tolerance) -> tuple[float, float, bool]:
    if len(reference) != len(outputs):
        raise RuntimeError(
            f"The {fmt} export has {len(outputs)} outputs, the Keras model "
            f"{len(reference)}."
        )
    tolerance = _tolerance(fmt, reference, tolerance)
    diff = 0.0
    for ref, out in zip(reference, outputs, strict=True):
        if ref.shape != out.shape:
            raise RuntimeError(
                f"The {fmt} export returns shape {out.shape}, Keras {ref.shape}."
            )
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        if np.any(np.isnan(ref64) != np.isnan(out64)):
            return float("inf"), tolerance, False
        diff = max(diff, float(np.nanmax(np.abs(ref64 - out64), initial=0.0)))
    return diff, tolerance, bool(diff <= tolerance)


def _tolerance(fmt, reference, tolerance) -> float:
    if tolerance is not None:
        return float(tolerance)
    atol, rtol = TOLERANCES[fmt]
    finite = [r[np.isfinite(r)] for r in reference]
    spread = max((float(np.ptp(r)) for r in finite if r.size), default=0.0)
    return atol + rtol * spread


def _report_failure(report: ExportReport, strict: bool, hint: str = "") -> None:
    if report.passed is not False:
        return
    message = (
        f"The {report.format} export {report.path!r} differs from the Keras model: "
        f"max abs diff {report.max_abs_diff:.3g} > tolerance {report.tolerance:.3g}."
        f"{hint} Pass `tolerance=` to accept a larger difference."
    )
    if strict:
        raise RuntimeError(message + " Nothing was written (strict=True).")
    warnings.warn(message, FilterPruneWarning, stacklevel=3)


# ----------------------------------------------------------------------------------
# Paths: checks and atomic writes
# ----------------------------------------------------------------------------------
def _check_target(path: Any, kind: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: {path!r}")
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if kind == "saved_model":
        if suffix in _FILE_SUFFIXES:
            raise ValueError(
                f"A SavedModel is a directory; `path` must not end with {suffix!r}. "
                f"Received: path={path!r}. Use export_tflite() for '.tflite' and "
                "save_keras() for '.keras'."
            )
        if os.path.exists(path) and not os.path.isdir(path):
            raise FileExistsError(f"{path!r} is a file; a SavedModel is a directory.")
    else:
        want = {"tflite": ".tflite", "keras": ".keras"}[kind]
        if suffix != want:
            raise ValueError(
                f"`path` must end with {want!r} for a {kind} export. "
                f"Received: path={path!r}"
            )
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path!r} is a directory; pass a file path.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise FileNotFoundError(
            f"The directory {parent!r} does not exist. Create it first, e.g. "
            "`os.makedirs(dirname, exist_ok=True)`."
        )
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{parent!r} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write in {parent!r} (permission denied); choose a writable "
            "directory."
        )
    return path


def _staging_name(path: str) -> str:
    parent, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(parent, f".{stem}.{secrets.token_hex(4)}.tmp{ext}")


@contextlib.contextmanager
def _staged(path: str, directory: bool = False) -> Iterator[str]:
    """Yields a hidden sibling of `path`; moves it into place if no error occurred."""
    tmp = _staging_name(path)
    if directory:
        os.mkdir(tmp)
    try:
        yield tmp
        if directory:
            backup = None
            if os.path.isdir(path):
                backup = _staging_name(path) + ".old"
                os.rename(path, backup)
            try:
                os.rename(tmp, path)
            except OSError:
                if backup:
                    os.rename(backup, path)
                raise
            if backup:
                shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, f))
        for root, _, files in os.walk(path)
        for f in files
    )


def _check_verify_args(num_verify: int, tolerance: float | None) -> None:
    if not isinstance(num_verify, int) or num_verify < 1:
        raise ValueError(f"`num_verify` must be an int >= 1. Received: {num_verify!r}")
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0. Received: {tolerance!r}")


# ----------------------------------------------------------------------------------
# .keras and SavedModel
# ----------------------------------------------------------------------------------
def save_keras(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    verify: bool = True,
    num_verify: int = 4,
    strict: bool = False,
    tolerance: float | None = None,
    representative_data: Any = None,
    custom_objects: dict[str, Any] | None = None,
) -> ExportReport:
    """Saves `model` as a `.keras` file, reloads it and checks its outputs.

    Args:
        model: `keras.Model` with defined inputs (functional or Sequential).
        path: str or PathLike ending in `.keras`. Overwritten if it exists.
        verify: bool. Reload the file and compare outputs on `num_verify` random
            inputs. Defaults to `True`.
        num_verify: int. Inputs used to verify. Defaults to `4`.
        strict: bool. Raise instead of warning when verification fails (the file
            is then not written). Defaults to `False`.
        tolerance: float or `None`. Absolute bound; `None` uses `TOLERANCES`.
        representative_data: Example inputs to verify on instead of random
            normal ones (needed when an input has unknown dimensions); the
            forms `export_tflite` accepts.
        custom_objects: dict or `None`. Passed to `keras.saving.load_model` for
            the reload check of unregistered custom layers.

    Returns:
        `ExportReport`.

    Raises:
        ValueError: `path` does not end in `.keras`.
        FileNotFoundError, PermissionError: the directory is missing or read-only.
        RuntimeError: with `strict=True`, when the reloaded model does not load or
            differs.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = save_keras(model, os.path.join(d, "model.keras"))
    >>> report.passed, report.max_abs_diff
    (True, 0.0)
    """
    start = time.perf_counter()
    _input_tensors(model)
    path = _check_target(path, "keras")
    _check_verify_args(num_verify, tolerance)
    feed = _feed(model, verify, num_verify, representative_data)
    hint = ""
    with _staged(path) as tmp:
        keras.saving.save_model(model, tmp)
        diff = tol = passed = None
        if verify:
            try:
                reloaded = keras.saving.load_model(
                    tmp, custom_objects=custom_objects, compile=False
                )
                # Input names are not kept by a reload (Sequential): match by order.
                feed2 = {
                    b.name: feed[a.name]
                    for a, b in zip(
                        _input_tensors(model), _input_tensors(reloaded), strict=True
                    )
                }
                diff, tol, passed = _compare(
                    "keras",
                    _keras_outputs(model, feed),
                    _keras_outputs(reloaded, feed2),
                    tolerance,
                )
            except Exception as e:  # any reload failure is a failed check
                diff, tol, passed = float("inf"), 0.0, False
                hint = (
                    f" Reloading failed: {type(e).__name__}: {e}. Register custom "
                    "layers with `keras.saving.register_keras_serializable()` or "
                    "pass `custom_objects=`."
                )
        report = ExportReport(
            path,
            "keras",
            _size(tmp),
            None,
            diff,
            tol,
            passed,
            time.perf_counter() - start,
        )
        if strict:
            _report_failure(report, strict, hint)
    _report_failure(report, False, hint)
    logger.info("Saved %s", report)
    return report


def export_saved_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    verify: bool = True,
    num_verify: int = 4,
    strict: bool = False,
    tolerance: float | None = None,
    representative_data: Any = None,
) -> ExportReport:
    """Exports an inference SavedModel (`model.export(path, format="tf_saved_model")`).

    The SavedModel has one endpoint, `serve` (also the `serving_default`
    signature), taking the Keras inputs by name. Load it with
    `keras.layers.TFSMLayer(path, call_endpoint="serve")` or `tf.saved_model.load`.

    Args:
        model: `keras.Model` with defined inputs.
        path: str or PathLike. A directory (created; replaced if it exists).
        verify: bool. Load the SavedModel and compare its `serving_default`
            outputs on `num_verify` random inputs. Defaults to `True`.
        num_verify: int. Defaults to `4`.
        strict: bool. Raise instead of warning on a failed check. Defaults to
            `False`.
        tolerance: float or `None`. Absolute bound; `None` uses `TOLERANCES`.
        representative_data: Example inputs to verify on, as in `save_keras`.

    Returns:
        `ExportReport`.

    Raises:
        ValueError: `path` ends with a model-file suffix such as `.tflite`.
        FileExistsError: `path` is an existing file.
        FileNotFoundError, PermissionError: the parent is missing or read-only.
        RuntimeError: Keras cannot trace the model, or `strict=True` and the check
            failed.

    Example:

    >>> import os, tempfile, keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = export_saved_model(model, os.path.join(d, "saved"))
    >>> report.format, report.passed
    ('saved_model', True)
    """
    import tensorflow as tf

    start = time.perf_counter()
    _input_tensors(model)
    path = _check_target(path, "saved_model")
    _check_verify_args(num_verify, tolerance)
    feed = _feed(model, verify, num_verify, representative_data)
    with _staged(path, directory=True) as tmp:
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as e:
            raise RuntimeError(
                f"Keras could not export {model.name!r} as a SavedModel: {e}"
            ) from e
        diff = tol = passed = None
        if verify:
            serve = tf.saved_model.load(tmp).signatures["serving_default"]
            names = _signature_names(model, serve.structured_input_signature[1])
            outputs = serve(**{names[k]: tf.constant(v) for k, v in feed.items()})
            diff, tol, passed = _compare(
                "saved_model",
                _keras_outputs(model, feed),
                _sorted_outputs(outputs),
                tolerance,
            )
            del serve
        report = ExportReport(
            path,
            "saved_model",
            _size(tmp),
            None,
            diff,
            tol,
            passed,
            time.perf_counter() - start,
        )
        if strict:
            _report_failure(report, strict)
    _report_failure(report, False)
    logger.info("Exported %s", report)
    return report


def _signature_names(model: keras.Model, signature_inputs: Any) -> dict[str, str]:
    """Maps Keras input names to signature input names (normally the same)."""
    keras_names = _input_names(model)
    sig_names = list(signature_inputs)
    if set(keras_names) == set(sig_names):
        return {n: n for n in keras_names}
    if len(keras_names) == len(sig_names) == 1:
        return {keras_names[0]: sig_names[0]}
    raise RuntimeError(
        f"Cannot match the model inputs {keras_names} to the exported signature "
        f"inputs {sig_names}; give the keras.Input layers unique plain names."
    )


# ----------------------------------------------------------------------------------
# TFLite
# ----------------------------------------------------------------------------------
def _convert_tflite(
    model: keras.Model,
    quantization: str | None,
    samples: list[dict[str, np.ndarray]] | None,
    int8_io: bool,
) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kfp-export-") as saved:
        try:
            model.export(saved, format="tf_saved_model", verbose=False)
        except Exception as e:
            raise RuntimeError(
                f"Keras could not trace {model.name!r} for TFLite conversion: {e}"
            ) from e
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.representative_dataset = lambda: iter(samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            with warnings.catch_warnings():  # TF's calibrator uses tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=r".*tf\.lite\.Interpreter")
                return converter.convert()
        except Exception as e:
            raise RuntimeError(_converter_hint(e, quantization)) from e


def _converter_hint(error: Exception, quantization: str | None) -> str:
    text = str(error)
    ops = re.findall(r"(?:TF Select ops|Custom ops): ([^\n]+)", text)
    what = f"ops that are not TFLite builtins ({', '.join(ops)})" if ops else "an error"
    message = (
        f"TFLite conversion (quantization={quantization!r}) failed on {what}. "
        "Replace the layers that use them with TFLite-supported ops, or convert "
        "yourself with `converter.target_spec.supported_ops` including "
        "`tf.lite.OpsSet.SELECT_TF_OPS` if your runtime has the Flex delegate."
    )
    if quantization == "int8":
        message += (
            " Some ops have no int8 kernel: quantization='dynamic' keeps float "
            "activations."
        )
    first = next((ln for ln in text.splitlines() if ln.strip()), text)[:300]
    return f"{message} Converter said: {first}"


def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str | None = None,
    representative_data: Any = None,
    *,
    int8_io: bool = False,
    verify: bool = True,
    num_verify: int = 4,
    strict: bool = False,
    tolerance: float | None = None,
) -> ExportReport:
    """Converts `model` to a TFLite flatbuffer, checks it in LiteRT, writes it.

    Conversion: `model.export(format="tf_saved_model")` then
    `tf.lite.TFLiteConverter.from_saved_model`, TFLite builtin ops only.

    Args:
        model: `keras.Model` with defined inputs (several inputs and outputs are
            fine; inputs are matched by name).
        path: str or PathLike ending in `.tflite`. Overwritten if it exists.
        quantization: `None` (float32), `"float16"` (float16 weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (full
            integer: int8 weights and activations, builtin int8 ops only).
        representative_data: Typical inputs. Required for `"int8"` (calibration;
            a few hundred samples, at most 500 are used); with any mode, also the
            verification inputs. An array `(N, ...)` (one input), a list/tuple or
            dict of arrays (several inputs), an iterable or `tf.data.Dataset` of
            such batches (or of `(inputs, targets)` pairs), or a function
            returning such an iterable.
        int8_io: bool. With `"int8"`, make the model inputs and outputs int8 too
            (no float at the boundary). Defaults to `False`.
        verify: bool. Run the file in LiteRT on `num_verify` inputs and compare
            with Keras. Defaults to `True`.
        num_verify: int. Defaults to `4`.
        strict: bool. Raise instead of warning on a failed check (the file is
            then not written). Defaults to `False`.
        tolerance: float or `None`. Absolute bound; `None` uses `TOLERANCES`.

    Returns:
        `ExportReport`.

    Raises:
        ValueError: bad `quantization`, `"int8"` without `representative_data`,
            `int8_io` without `"int8"`, or `path` not ending in `.tflite`.
        FileNotFoundError, PermissionError: the directory is missing or read-only.
        RuntimeError: the converter failed (e.g. an op with no TFLite builtin), or
            `strict=True` and the check failed.
        ImportError: `verify=True` without `ai-edge-litert` installed.

    Example:

    >>> import os, tempfile, keras, numpy as np
    >>> inp = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    >>> out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> model = keras.Model(inp, out)
    >>> data = np.random.default_rng(0).normal(size=(16, 8, 8, 3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = export_tflite(model, os.path.join(d, "m.tflite"), "int8", data)
    >>> report.quantization, report.passed
    ('int8', True)
    """
    from keras_filterprune.runtime import _interpreter_class, _Runner

    start = time.perf_counter()
    _input_tensors(model)
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' calibrates activation ranges and needs "
            "`representative_data`: a few hundred typical inputs, e.g. a NumPy array "
            "of shape (N, *input_shape), a tf.data.Dataset of input batches or of "
            "(inputs, labels), or a list of arrays for a multi-input model. Without "
            "data, use quantization='dynamic'."
        )
    if int8_io and quantization != "int8":
        raise ValueError(
            f"`int8_io=True` needs quantization='int8'. Received: {quantization!r}"
        )
    path = _check_target(path, "tflite")
    _check_verify_args(num_verify, tolerance)
    samples = (
        None if representative_data is None else _samples(representative_data, model)
    )
    if verify:
        _interpreter_class()  # fail early, before converting
        feed = _verification_feed(model, num_verify, samples)
    content = _convert_tflite(model, quantization, samples, int8_io)
    with _staged(path) as tmp:
        with open(tmp, "xb") as f:
            f.write(content)
        diff = tol = passed = None
        if verify:
            runner = _Runner(content, num_threads=2)
            names = _signature_names(model, runner.input_details)
            outputs = runner.run({names[k]: v for k, v in feed.items()})
            diff, tol, passed = _compare(
                quantization,
                _keras_outputs(model, feed),
                _sorted_outputs(outputs),
                tolerance,
            )
        report = ExportReport(
            path,
            "tflite",
            len(content),
            quantization,
            diff,
            tol,
            passed,
            time.perf_counter() - start,
        )
        hint = (
            " Check that representative_data covers the inputs' real range."
            if quantization == "int8"
            else ""
        )
        if strict:
            _report_failure(report, strict, hint)
    _report_failure(report, False, hint)
    logger.info("Exported %s", report)
    return report
