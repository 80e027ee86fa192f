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
checked in LiteRT with `keras_filterprune.litert`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_filterprune._feeds import (
    _feed,
    _input_tensors,
    _keras_outputs,
    _samples,
    _signature_names,
    _sorted_outputs,
    _verification_feed,
)
from keras_filterprune._files import _check_target, _size, _staged
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.litert import _interpreter_class, _Runner

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
# Verification
# ----------------------------------------------------------------------------------
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


def _prepare(model, path, kind: str, num_verify, tolerance) -> str:
    """Checks the model, the destination and the verification arguments before
    any work; returns the path as a `str`."""
    backend = keras.backend.backend()
    if kind in ("saved_model", "tflite") and backend != "tensorflow":
        raise RuntimeError(
            f"{_KIND_NAMES[kind]} export runs on the TensorFlow backend (this "
            f"process uses {backend!r}): save the model with `save_keras(model, "
            "'model.keras')` (a .keras file loads on every backend) and export it "
            "from a TensorFlow process, e.g. `KERAS_BACKEND=tensorflow "
            "keras-filterprune export model.keras --tflite model.tflite`."
        )
    _input_tensors(model)
    path = _check_target(path, kind)
    if (
        isinstance(num_verify, bool)
        or not isinstance(num_verify, int)
        or (num_verify < 1)
    ):
        raise ValueError(f"`num_verify` must be an int >= 1. Received: {num_verify!r}")
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"`tolerance` must be >= 0. Received: {tolerance!r}")
    return path


_KIND_NAMES = {"saved_model": "SavedModel", "tflite": "TFLite"}


class _CheckFailed(Exception):
    """The written file could not even be run (e.g. it does not reload)."""


def _export(
    kind: str,
    model: keras.Model,
    path: str,
    write: Callable[[str], None],
    run: Callable[[str, dict], list],
    *,
    feed: dict | None,
    start: float,
    quantization: str | None = None,
    tolerance: float | None = None,
    strict: bool = False,
    hint: str = "",
) -> ExportReport:
    """The template of every export: write to a hidden staging name, verify
    `run(staged path, feed)` against Keras, then move it into place (with
    `strict`, only when the check passed)."""
    fmt = quantization if kind == "tflite" else kind
    with _staged(path, directory=kind == "saved_model") as tmp:
        write(tmp)
        diff = tol = passed = None
        if feed is not None:
            try:
                reference = _keras_outputs(model, feed)
                diff, tol, passed = _compare(fmt, reference, run(tmp, feed), tolerance)
            except _CheckFailed as e:
                diff, tol, passed, hint = float("inf"), 0.0, False, str(e)
        seconds = time.perf_counter() - start
        report = ExportReport(
            path, kind, _size(tmp), quantization, diff, tol, passed, seconds
        )
        if strict:
            _report_failure(report, strict, hint)
    _report_failure(report, False, hint)
    logger.info("Exported %s", report)
    return report


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
    path = _prepare(model, path, "keras", num_verify, tolerance)
    feed = _feed(model, verify, num_verify, representative_data)

    def run(tmp: str, feed: dict) -> list:
        try:
            reloaded = keras.saving.load_model(
                tmp, custom_objects=custom_objects, compile=False
            )
            # Input names are not kept by a reload (Sequential): match by order.
            pairs = zip(_input_tensors(model), _input_tensors(reloaded), strict=True)
            return _keras_outputs(reloaded, {b.name: feed[a.name] for a, b in pairs})
        except Exception as e:  # any reload failure is a failed check
            raise _CheckFailed(
                f" Reloading failed: {type(e).__name__}: {e}. Register custom "
                "layers with `keras.saving.register_keras_serializable()` or "
                "pass `custom_objects=`."
            ) from e

    return _export(
        "keras",
        model,
        path,
        lambda tmp: keras.saving.save_model(model, tmp),
        run,
        feed=feed,
        start=start,
        tolerance=tolerance,
        strict=strict,
    )


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
        RuntimeError: Keras cannot trace the model, `strict=True` and the check
            failed, or the Keras backend is not TensorFlow (the message says how
            to export from a TensorFlow process).

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
    path = _prepare(model, path, "saved_model", num_verify, tolerance)
    feed = _feed(model, verify, num_verify, representative_data)

    def write(tmp: str) -> None:
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as e:
            raise RuntimeError(
                f"Keras could not export {model.name!r} as a SavedModel: {e}"
            ) from e

    def run(tmp: str, feed: dict) -> list:
        serve = tf.saved_model.load(tmp).signatures["serving_default"]
        names = _signature_names(model, serve.structured_input_signature[1])
        return _sorted_outputs(
            serve(**{names[k]: tf.constant(v) for k, v in feed.items()})
        )

    return _export(
        "saved_model",
        model,
        path,
        write,
        run,
        feed=feed,
        start=start,
        tolerance=tolerance,
        strict=strict,
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
        RuntimeError: the converter failed (e.g. an op with no TFLite builtin),
            `strict=True` and the check failed, or the Keras backend is not
            TensorFlow (the message says how to export from a TensorFlow process).
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
    path = _prepare(model, path, "tflite", num_verify, tolerance)
    samples = (
        None if representative_data is None else _samples(representative_data, model)
    )
    feed = None
    if verify:
        _interpreter_class()  # fail early, before converting
        feed = _verification_feed(model, num_verify, samples)
    content = _convert_tflite(model, quantization, samples, int8_io)

    def write(tmp: str) -> None:
        with open(tmp, "xb") as f:
            f.write(content)

    def run(tmp: str, feed: dict) -> list:
        runner = _Runner(content, num_threads=2)
        names = _signature_names(model, runner.input_details)
        return _sorted_outputs(runner.run({names[k]: v for k, v in feed.items()}))

    hint = " Check that representative_data covers the inputs' real range."
    return _export(
        "tflite",
        model,
        path,
        write,
        run,
        feed=feed,
        start=start,
        quantization=quantization,
        tolerance=tolerance,
        strict=strict,
        hint=hint if quantization == "int8" else "",
    )
