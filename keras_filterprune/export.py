"""Export pruned models as .keras, SavedModel and TFLite, each checked against Keras.

Every export runs its own output (the reloaded `.keras` file, the SavedModel, the
TFLite file in LiteRT) on a few inputs, compares it with the Keras model and says
in its `ExportReport` what was compared and whether it passed. Files are written
to a hidden temporary name in the target directory and moved into place with
`os.replace` (a directory with `os.rename`) only when writing and checking
succeeded (`strict=True`, the default), so a failed export never leaves a file
behind; `strict=False` writes it anyway and warns.

How outputs are judged (`TOLERANCES`, `MIN_TOP1_AGREEMENT`), with the *output
scale* `S` = the span of the Keras outputs on the verification inputs, zero
included (`max(max, 0) - min(min, 0)`), or `1` for outputs within `[0, 1]`
(probabilities, which int8 stores over that whole range):

- float32 (`.keras`, SavedModel, TFLite without quantization): the largest
  absolute difference must be at most `1e-4 + 1e-5 * S` (only the order of float
  sums differs).
- float16, dynamic and int8 TFLite: the largest difference must be at most a
  fraction of `S` (1 % for float16, 5 % for dynamic and int8), and on
  classifier-like outputs (shape `(batch, classes)`) the top-1 class must agree
  on at least 90 % of the inputs; where Keras' two candidate classes are within
  the allowed error of each other (a near tie), either answer counts as agreeing.

TFLite conversion goes Keras `model.export(..., format="tf_saved_model")` →
`tf.lite.TFLiteConverter.from_saved_model`, with TFLite builtin ops only. This is the
path `TFLiteConverter.from_keras_model` takes internally for Keras 3 models (same
flatbuffer), but it keeps the Keras input names as the signature names (so
multi-input models and representative data are fed by name), and unlike Keras' own
`format="litert"` export it does not silently fall back to TF Select ops that edge
runtimes cannot run. What TensorFlow, the converter and LiteRT print from C++
(`fully_quantize: 0, ...`, `Created TensorFlow Lite XNNPACK delegate for CPU.`) is
kept off the terminal, and shown with the error when a step fails; set the
environment variable `KERAS_FILTERPRUNE_NATIVE_LOGS=1` to see it as it comes.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_filterprune._export_checks import (
    MIN_TOP1_AGREEMENT,
    QUANTIZATIONS,
    TOLERANCES,
    CheckFailed,
    ExportCheckError,
    ExportReport,
    failure_message,
    judge,
)
from keras_filterprune._files import (
    check_target,
    file_size,
    native_output_captured,
    staged,
    without_temporary_paths,
)
from keras_filterprune._messages import say
from keras_filterprune._validation import check_bool, check_int, check_number
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.runtime import feeds
from keras_filterprune.runtime.convert import convert_tflite
from keras_filterprune.runtime.litert import Runner, interpreter_class, sorted_outputs

__all__ = [
    "ExportCheckError",
    "ExportReport",
    "MIN_TOP1_AGREEMENT",
    "TOLERANCES",
    "export_saved_model",
    "export_tflite",
    "save_keras",
]

logger = logging.getLogger(__name__)


def _prepare(model, path, kind: str, num_verify, tolerance, strict, verify) -> str:
    """Checks the model (inputs, finite weights), the destination and the
    verification arguments before any work; returns the path as a `str`."""
    backend = keras.backend.backend()
    if kind in ("saved_model", "tflite") and backend != "tensorflow":
        raise RuntimeError(
            f"{_KIND_NAMES[kind]} export runs on the TensorFlow backend (this "
            f"process uses {backend!r}): save the model with `save_keras(model, "
            "'model.keras')` (a .keras file loads on every backend) and export it "
            "from a TensorFlow process, e.g. `KERAS_BACKEND=tensorflow "
            "keras-filterprune export model.keras --tflite model.tflite`."
        )
    feeds.input_tensors(model)
    for variable, value in zip(model.weights, model.get_weights()):
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ValueError(
                f"Model {model.name!r} has NaN or Inf in weight {variable.path!r}: "
                "nothing was exported. Train or load finite weights first."
            )
    path = check_target(path, kind)
    check_int(num_verify, "num_verify", minimum=1)
    check_bool(strict, "strict")
    check_bool(verify, "verify")
    if tolerance is not None:
        check_number(tolerance, "tolerance", low=0)
    return path


_KIND_NAMES = {"saved_model": "SavedModel", "tflite": "TFLite"}


def _export(
    kind: str,
    model: keras.Model,
    path: str,
    write: Callable[[str], None],
    run: Callable[[str, dict], list],
    *,
    feed: dict | None,
    start: float,
    verify_data: str = "random",
    quantization: str | None = None,
    tolerance: float | None = None,
    strict: bool = True,
    hint: str = "",
) -> ExportReport:
    """The template of every export: write to a hidden staging name, compare
    `run(staged path, feed)` with Keras, then move it into place (with `strict`,
    only when the check passed)."""
    fmt = quantization if kind == "tflite" else kind
    with staged(path, directory=kind == "saved_model") as tmp:
        write(tmp)
        fields: dict[str, Any] = {}
        cause = None
        if feed is not None:
            reference = feeds.keras_outputs(model, feed)
            fields["num_verify"] = len(next(iter(feed.values())))
            fields["verify_data"] = verify_data
            try:
                fields.update(judge(fmt, reference, run(tmp, feed), tolerance))
            except Exception as e:  # a file that cannot be run fails its check
                cause = e
                if isinstance(e, CheckFailed):
                    problem, hint = e.args[0], e.args[1] if len(e.args) > 1 else hint
                else:
                    problem = f"it could not be run ({type(e).__name__}: {e})"
                fields["passed"] = False
                fields["problem"] = without_temporary_paths(
                    " ".join(str(problem).split()), {tmp: path}
                )
        report = ExportReport(
            path=path,
            format=kind,
            size_bytes=file_size(tmp),
            quantization=quantization,
            max_abs_diff=fields.pop("max_abs_diff", None),
            tolerance=fields.pop("tolerance", None),
            passed=fields.pop("passed", None),
            seconds=time.perf_counter() - start,
            **fields,
        )
        if strict and report.passed is False:
            raise ExportCheckError(
                failure_message(report, hint, strict=True), report
            ) from cause
    if report.passed is False:
        warnings.warn(
            failure_message(report, hint, strict=False),
            FilterPruneWarning,
            stacklevel=3,
        )
    logger.info("Exported %s", report)
    return report


# ----------------------------------------------------------------------------------
# .keras and SavedModel
# ----------------------------------------------------------------------------------
def _without_optimizer(model: keras.Model) -> keras.Model:
    """`model`, or an uncompiled functional model over the same layers (the
    weights are shared, not copied)."""
    if not getattr(model, "compiled", False) and not getattr(model, "optimizer", None):
        return model
    try:
        try:  # the structure (dicts, lists) of inputs and outputs
            inputs, outputs = model.input, model.output
        except (AttributeError, ValueError):  # a Sequential never called
            inputs, outputs = _single(model.inputs), _single(model.outputs)
        return keras.Model(inputs, outputs, name=model.name)
    except Exception as e:
        raise RuntimeError(
            f"Cannot save {model.name!r} without its optimizer: its layers do not "
            f"form a functional graph ({type(e).__name__}: {e}). Save it with "
            "include_optimizer=True."
        ) from e


def _single(tensors: list) -> Any:
    return tensors[0] if len(tensors) == 1 else tensors


def save_keras(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    verify: bool = True,
    num_verify: int = 8,
    strict: bool = True,
    tolerance: float | None = None,
    representative_data: Any = None,
    custom_objects: dict[str, Any] | None = None,
    include_optimizer: bool = True,
) -> ExportReport:
    """Saves `model` as a `.keras` file, reloads it and checks its outputs.

    The reloaded model must match `model` to `1e-4 + 1e-5 * S` (`S`: the output
    scale, see `keras_filterprune.export`) on `num_verify` inputs.

    Args:
        model: `keras.Model` with defined inputs (functional or Sequential).
        path: str or PathLike ending in `.keras`. Overwritten if it exists.
        verify: bool. Reload the file and compare outputs on `num_verify` random
            inputs. Defaults to `True`.
        num_verify: int. Inputs used to verify. Defaults to `8`.
        strict: bool. When the check fails, raise `ExportCheckError` and write
            nothing; `False` writes the file and warns (`FilterPruneWarning`).
            Defaults to `True`.
        tolerance: float or `None`. An absolute bound on the largest output
            difference, instead of the default criterion.
        representative_data: Example inputs to verify on instead of random
            normal ones (needed when an input has unknown dimensions); the
            forms `export_tflite` accepts.
        custom_objects: dict or `None`. Passed to `keras.saving.load_model` for
            the reload check of unregistered custom layers.
        include_optimizer: bool. `False` saves a functional model over the
            same layers, uncompiled (architecture and weights, no optimizer
            state or compile settings): the file an inference deployment needs,
            and the size to compare. Defaults to `True` (what `model.save`
            writes).

    Returns:
        `ExportReport`.

    Raises:
        ValueError: `path` does not end in `.keras`.
        FileNotFoundError, PermissionError: the directory is missing or read-only.
        ExportCheckError: a `RuntimeError`; with `strict=True`, the file does not
            reload or its outputs differ (nothing was written; the message and
            `error.report` say what was compared).

    Example:

    >>> import os, tempfile, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = save_keras(model, os.path.join(d, "model.keras"))
    >>> report.passed, report.max_abs_diff
    (True, 0.0)
    >>> print(report.verification)
    reloaded .keras file vs the model on 8 random inputs: max |difference| 0
    is within the allowed ... (1e-4 + 1e-5 x the output scale ...): passed

    A trained model saved without its optimizer state is smaller:

    >>> model.compile(optimizer="adam", loss="mse")
    >>> history = model.fit(np.ones((4, 4)), np.ones((4, 2)), verbose=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     full = save_keras(model, os.path.join(d, "full.keras"))
    ...     lean = save_keras(
    ...         model, os.path.join(d, "lean.keras"), include_optimizer=False
    ...     )
    >>> lean.size_bytes < full.size_bytes
    True
    """
    start = time.perf_counter()
    path = _prepare(model, path, "keras", num_verify, tolerance, strict, verify)
    check_bool(include_optimizer, "include_optimizer")
    feed = feeds.feed_from_data(model, verify, num_verify, representative_data)
    saved = model if include_optimizer else _without_optimizer(model)

    def run(tmp: str, feed: dict) -> list:
        try:
            reloaded = keras.saving.load_model(
                tmp, custom_objects=custom_objects, compile=False
            )
        except Exception as e:  # any reload failure is a failed check
            raise CheckFailed(
                f"the file does not reload ({type(e).__name__}: {e})",
                " Register custom layers with "
                "`keras.saving.register_keras_serializable()` or pass "
                "`custom_objects=`.",
            ) from e
        # Input names are not kept by a reload (Sequential): match by order.
        pairs = zip(
            feeds.input_tensors(model), feeds.input_tensors(reloaded), strict=True
        )
        return feeds.keras_outputs(reloaded, {b.name: feed[a.name] for a, b in pairs})

    return _export(
        "keras",
        model,
        path,
        lambda tmp: keras.saving.save_model(saved, tmp),
        run,
        feed=feed,
        start=start,
        verify_data="random" if representative_data is None else "representative",
        tolerance=tolerance,
        strict=strict,
    )


def export_saved_model(
    model: keras.Model,
    path: str | os.PathLike,
    *,
    verify: bool = True,
    num_verify: int = 8,
    strict: bool = True,
    tolerance: float | None = None,
    representative_data: Any = None,
) -> ExportReport:
    """Exports an inference SavedModel (`model.export(path, format="tf_saved_model")`).

    The SavedModel has one endpoint, `serve` (also the `serving_default`
    signature), taking the Keras inputs by name. Load it with
    `keras.layers.TFSMLayer(path, call_endpoint="serve")` or `tf.saved_model.load`.
    Its outputs must match Keras' to `1e-4 + 1e-5 * S` (`S`: the output scale,
    see `keras_filterprune.export`).

    Args:
        model: `keras.Model` with defined inputs.
        path: str or PathLike. A directory (created; replaced if it exists).
        verify: bool. Load the SavedModel and compare its `serving_default`
            outputs on `num_verify` random inputs. Defaults to `True`.
        num_verify: int. Defaults to `8`.
        strict: bool. When the check fails, raise `ExportCheckError` and write
            nothing; `False` writes the directory and warns. Defaults to `True`.
        tolerance: float or `None`. An absolute bound on the largest output
            difference, instead of the default criterion.
        representative_data: Example inputs to verify on, as in `save_keras`.

    Returns:
        `ExportReport`.

    Raises:
        ValueError: `path` ends with a model-file suffix such as `.tflite`.
        FileExistsError: `path` is an existing file.
        FileNotFoundError, PermissionError: the parent is missing or read-only.
        ExportCheckError: a `RuntimeError`; `strict=True` and the check failed.
        RuntimeError: Keras cannot trace the model, or the Keras backend is not
            TensorFlow (the message says how to export from a TensorFlow
            process).

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
    path = _prepare(model, path, "saved_model", num_verify, tolerance, strict, verify)
    feed = feeds.feed_from_data(model, verify, num_verify, representative_data)

    def write(tmp: str) -> None:
        try:
            with native_output_captured({tmp: path}):
                model.export(tmp, format="tf_saved_model", verbose=False)
        except Exception as e:
            reason = without_temporary_paths(str(e), {tmp: path})
            raise RuntimeError(
                f"Keras could not export {model.name!r} as a SavedModel: {reason}"
            ) from e

    def run(tmp: str, feed: dict) -> list:
        with native_output_captured({tmp: path}):
            serve = tf.saved_model.load(tmp).signatures["serving_default"]
        names = feeds.signature_names(model, serve.structured_input_signature[1])
        return sorted_outputs(
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
        verify_data="random" if representative_data is None else "representative",
        tolerance=tolerance,
        strict=strict,
    )


# ----------------------------------------------------------------------------------
# TFLite
# ----------------------------------------------------------------------------------
def export_tflite(
    model: keras.Model,
    path: str | os.PathLike,
    quantization: str | None = None,
    representative_data: Any = None,
    *,
    int8_io: bool = False,
    verify: bool = True,
    num_verify: int = 8,
    strict: bool = True,
    tolerance: float | None = None,
    verbose: int = 1,
) -> ExportReport:
    """Converts `model` to a TFLite flatbuffer, checks it in LiteRT, writes it.

    Conversion: `model.export(format="tf_saved_model")` then
    `tf.lite.TFLiteConverter.from_saved_model`, TFLite builtin ops only.

    The check runs the file in LiteRT on `num_verify` inputs and compares with
    Keras, judging by what the quantization can do (`S`: the output scale, the
    span of Keras' outputs with zero included, `1` for probabilities):

    - `None` (float32): the largest difference must be `<= 1e-4 + 1e-5 * S`.
    - `"float16"`, `"dynamic"`, `"int8"`: the largest difference must be at most
      1 % (float16) or 5 % (dynamic, int8) of `S`, and on classifier-like outputs
      (`(batch, classes)`) the top-1 class must agree on >= 90 % of the inputs
      (near ties, within the allowed error in Keras, count as agreeing).

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
        num_verify: int. Defaults to `8`.
        strict: bool. When the check fails, raise `ExportCheckError` and write
            nothing; `False` writes the file and warns (`FilterPruneWarning`).
            Defaults to `True`.
        tolerance: float or `None`. An absolute bound on the largest output
            difference, instead of the criteria above.
        verbose: int. `1` prints a line before the conversion (int8 calibration
            and conversion take a minute on large models), as Keras prints its
            progress; `0` is silent. Defaults to `1`.

    Returns:
        `ExportReport`; `print(report)` says what was compared and whether it
        passed.

    Raises:
        ValueError: bad `quantization`, `"int8"` without `representative_data`,
            `int8_io` without `"int8"`, or `path` not ending in `.tflite`.
        FileNotFoundError, PermissionError: the directory is missing or read-only.
        ExportCheckError: a `RuntimeError`; `strict=True` and the check failed
            (nothing was written; `error.report` says what was compared).
        RuntimeError: the converter failed (e.g. an op with no TFLite builtin),
            or the Keras backend is not TensorFlow (the message says how to
            export from a TensorFlow process).
        ImportError: `verify=True` without `ai-edge-litert` installed.

    Example:

    >>> import os, tempfile, keras, numpy as np
    >>> inp = keras.Input((8, 8, 3))
    >>> x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    >>> out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    >>> model = keras.Model(inp, out, name="tiny")
    >>> data = np.random.default_rng(0).normal(size=(16, 8, 8, 3))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = export_tflite(model, os.path.join(d, "m.tflite"), "int8", data)
    export_tflite: converting 'tiny' to TFLite (int8), calibrating activation
    ranges on 16 representative samples...
    >>> report.quantization, report.passed
    ('int8', True)
    >>> print(report.verification)
    TFLite (int8) in LiteRT vs Keras on 8 representative inputs: top-1 agreement
    100% (needs >= 90%...), max error ...% of the output scale ... (needs <= 5%):
    passed

    `verbose=0` prints nothing; `strict=False` keeps a file that fails its check
    (here, against a `tolerance=` no float16 file can meet) and warns:

    >>> import warnings
    >>> with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     report = export_tflite(
    ...         model, os.path.join(d, "m.tflite"), "float16", tolerance=0.0,
    ...         strict=False, verbose=0,
    ...     )
    ...     kept = os.path.exists(report.path)
    >>> report.passed, kept
    (False, True)
    """
    start = time.perf_counter()
    feeds.input_tensors(model)
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
    path = _prepare(model, path, "tflite", num_verify, tolerance, strict, verify)
    verbose = check_int(verbose, "verbose", minimum=0)
    samples = (
        None
        if representative_data is None
        else feeds.samples(representative_data, model)
    )
    feed = None
    if verify:
        interpreter_class()  # fail early, before converting
        feed = feeds.verification_feed(model, num_verify, samples)
    if verbose:
        say(f"export_tflite: {_converting(model, quantization, samples)}...")
    content = convert_tflite(model, quantization, samples, int8_io)

    def write(tmp: str) -> None:
        with open(tmp, "xb") as f:
            f.write(content)

    def run(tmp: str, feed: dict) -> list:
        runner = Runner(content, num_threads=2)
        names = feeds.signature_names(model, runner.input_details)
        return sorted_outputs(runner.run({names[k]: v for k, v in feed.items()}))

    hint = " Check that representative_data covers the inputs' real range."
    return _export(
        "tflite",
        model,
        path,
        write,
        run,
        feed=feed,
        start=start,
        verify_data="random" if samples is None else "representative",
        quantization=quantization,
        tolerance=tolerance,
        strict=strict,
        hint=hint if quantization == "int8" else "",
    )


def _converting(model, quantization, samples) -> str:
    """`converting 'name' to TFLite (int8), calibrating ...`, for progress lines."""
    text = f"converting {model.name!r} to TFLite ({quantization or 'float32'})"
    if quantization == "int8":
        text += (
            f", calibrating activation ranges on {len(samples)} representative samples"
        )
    return text
