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

import dataclasses
import logging
import math
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
from keras_filterprune._files import (
    _check_target,
    _size,
    _staged,
    native_output_captured,
    without_temporary_paths,
)
from keras_filterprune._messages import say
from keras_filterprune._validation import check_bool, check_int, check_number
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.litert import _interpreter_class, _Runner

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

QUANTIZATIONS = (None, "float16", "dynamic", "int8")
_QUANTIZED = ("float16", "dynamic", "int8")

#: `(atol, rtol)` per export: the largest absolute difference allowed is
#: `atol + rtol * S` (S: the output scale, see the module docstring).
#: fp32 exports only reorder float sums. float16 rounds weights to 11 significant
#: bits (measured 1e-4 S). dynamic stores int8 weights and quantises activations
#: per batch on the fly (measured up to 0.25 % S). int8 quantises every activation
#: to 256 levels calibrated on representative data, errors compound per layer
#: (measured 0.4-0.9 % S on 2- to 20-layer nets). Each bound leaves >= 5x margin
#: over what was measured and still catches a wrong or missing channel, which
#: moves outputs by O(S).
TOLERANCES: dict[str | None, tuple[float, float]] = {
    "keras": (1e-4, 1e-5),
    "saved_model": (1e-4, 1e-5),
    None: (1e-4, 1e-5),
    "float16": (0.0, 1e-2),
    "dynamic": (0.0, 5e-2),
    "int8": (0.0, 5e-2),
}

#: Share of verification inputs on which a quantized TFLite model must pick the
#: Keras model's top-1 class (classifier-like outputs only; near ties agree).
MIN_TOP1_AGREEMENT = 0.9


# ----------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------
def _pct(fraction: float) -> str:
    if not math.isfinite(fraction):
        return "unbounded"
    percent = 100 * fraction
    return f"{percent:.0f}%" if percent >= 10 or percent == 0 else f"{percent:.2g}%"


def _exp(value: float) -> str:
    """`1e-4` rather than `0.0001` or `1e-04`."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.0e}").replace("e+", "e")


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What an export wrote, what it was compared with, and whether it passed.

    `str(report)` and `report.verification` say it in words, e.g.
    `TFLite (int8) in LiteRT vs Keras on 8 representative inputs: top-1
    agreement 100% (needs >= 90%), max error 0.47% of the output scale 1.2
    (needs <= 5%): passed`.

    Attributes:
        path: `str`. The file (or SavedModel directory) written. With
            `strict=True` and a failed check (the report then comes with the
            `ExportCheckError`), nothing was written there.
        format: `str`. `"keras"`, `"saved_model"` or `"tflite"`.
        size_bytes: `int`. Size on disk (all files of a SavedModel).
        quantization: `str` or `None`. TFLite quantization, `None` for float32.
        max_abs_diff: `float` or `None`. Largest absolute output difference against
            the Keras model; `None` when not compared.
        tolerance: `float` or `None`. The largest `max_abs_diff` allowed (for
            quantized TFLite, the allowed share of the output scale times it).
        passed: `bool` or `None`. Whether the check passed; `None` when
            `verify=False`.
        seconds: `float`. Wall time of the export, verification included.
        num_verify: `int`. Inputs compared (`0` when not verified).
        verify_data: `str`. `"random"` (normal noise) or `"representative"` (the
            first samples of `representative_data`).
        output_scale: `float` or `None`. The output scale `S` the tolerance is
            relative to (see `keras_filterprune.export`).
        criterion: `str` or `None`. `"absolute"` (float32: `max_abs_diff <=
            1e-4 + 1e-5 * S`), `"relative"` (quantized: error share of `S` and
            top-1 agreement) or `"tolerance"` (the caller's `tolerance=`).
        top1_agreement: `float` or `None`. With `"relative"`, the share of inputs
            on which TFLite picks Keras' top-1 class (near ties count as
            agreeing); the lowest over classifier-like outputs, `None` if none.
        top1_near_ties: `int`. Inputs counted as agreeing because Keras' two
            classes were within the allowed error of each other.
        problem: `str` or `None`. Why the file could not be compared at all
            (e.g. it does not reload); `passed` is then `False`.
    """

    path: str
    format: str
    size_bytes: int
    quantization: str | None
    max_abs_diff: float | None
    tolerance: float | None
    passed: bool | None
    seconds: float
    num_verify: int = 0
    verify_data: str = "random"
    output_scale: float | None = None
    criterion: str | None = None
    top1_agreement: float | None = None
    top1_near_ties: int = 0
    problem: str | None = None

    @property
    def kind(self) -> str:
        """What was exported, in words: `".keras"`, `"SavedModel"`,
        `"TFLite (int8)"`, …"""
        if self.format == "tflite":
            return f"TFLite ({self.quantization or 'float32'})"
        return {"keras": ".keras", "saved_model": "SavedModel"}.get(
            self.format, self.format
        )

    @property
    def max_relative_error(self) -> float | None:
        """`max_abs_diff` as a share of the output scale (`None` if not compared)."""
        if self.max_abs_diff is None or self.output_scale is None:
            return None
        if self.output_scale == 0:
            return 0.0 if self.max_abs_diff == 0 else math.inf
        return self.max_abs_diff / self.output_scale

    @property
    def verification(self) -> str:
        """The check in one sentence: what was compared on which inputs, the
        measured error against the allowed one, and `passed` or `FAILED`."""
        subject = {
            "keras": "reloaded .keras file vs the model",
            "saved_model": "SavedModel vs Keras",
        }.get(self.format, f"{self.kind} in LiteRT vs Keras")
        if self.passed is None:
            return f"{self.kind}: not checked against Keras (verify=False)"
        verdict = "passed" if self.passed else "FAILED"
        if self.problem is not None:
            return f"{subject}: {self.problem}: {verdict}"
        return (
            f"{subject} on {self.num_verify} {self.verify_data} inputs: "
            f"{self._measures()}: {verdict}"
        )

    def _measures(self) -> str:
        diff, allowed = self.max_abs_diff, self.tolerance
        if self.criterion == "relative":
            parts = []
            if self.top1_agreement is not None:
                ties = self.top1_near_ties
                note = (
                    f"; {ties} near tie{'s' if ties > 1 else ''} within the allowed "
                    "error counted as agreeing"
                    if ties
                    else ""
                )
                parts.append(
                    f"top-1 agreement {_pct(self.top1_agreement)} "
                    f"(needs >= {_pct(MIN_TOP1_AGREEMENT)}{note})"
                )
            rtol = TOLERANCES[self.quantization][1]
            parts.append(
                f"max error {_pct(self.max_relative_error)} of the output scale "
                f"{self.output_scale:.3g} (needs <= {_pct(rtol)})"
            )
            return ", ".join(parts)
        within = "is within" if diff <= allowed else "exceeds"
        if self.criterion == "tolerance":
            why = "set by `tolerance=`"
        else:
            atol, rtol = TOLERANCES[
                self.quantization if self.format == "tflite" else self.format
            ]
            scale = f"{self.output_scale:.3g}"
            why = f"{_exp(atol)} + {_exp(rtol)} x the output scale {scale}"
        return f"max |difference| {diff:.3g} {within} the allowed {allowed:.3g} ({why})"

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.kind}, {self.size_bytes / 1024:.1f} KiB, "
            f"{self.seconds:.2f} s. {self.verification}"
        )


class ExportCheckError(RuntimeError):
    """An export failed its check against Keras (`strict=True`): nothing was
    written. `error.report` is the `ExportReport` of the file that was not kept."""

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


# ----------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------
class _CheckFailed(Exception):
    """The written file could not be compared (it does not reload, its outputs
    do not match the model's in number or shape, ...)."""


def _output_scale(reference: list[np.ndarray]) -> float:
    """The largest span among the outputs, zero included; `1` for an output
    whose values all lie in `[0, 1]` (probabilities)."""
    scale = 0.0
    for ref in reference:
        finite = ref.astype(np.float64)
        finite = finite[np.isfinite(finite)]
        if not finite.size:
            continue
        low, high = float(finite.min()), float(finite.max())
        span = 1.0 if 0 <= low and high <= 1 else max(high, 0) - min(low, 0)
        scale = max(scale, span)
    return scale


def _top1(reference, outputs, allowed: float) -> tuple[float | None, int]:
    """Lowest top-1 agreement over `(batch, classes)` outputs, and near ties."""
    rates, ties = [], 0
    for ref, out in zip(reference, outputs, strict=True):
        if ref.ndim != 2 or ref.shape[1] < 2 or not len(ref):
            continue
        rows = np.arange(len(ref))
        keras_top, lite_top = ref.argmax(axis=1), out.argmax(axis=1)
        same = keras_top == lite_top
        gap = ref[rows, keras_top].astype(np.float64) - ref[rows, lite_top]
        tie = ~same & (gap <= allowed)
        rates.append(float(np.mean(same | tie)))
        ties += int(tie.sum())
    return (min(rates), ties) if rates else (None, 0)


def _judge(fmt, reference, outputs, tolerance) -> dict[str, Any]:
    """Compares the export's outputs with Keras'; returns `ExportReport` fields."""
    if len(reference) != len(outputs):
        raise _CheckFailed(
            f"it has {len(outputs)} outputs, the Keras model {len(reference)}"
        )
    diff = 0.0
    for ref, out in zip(reference, outputs, strict=True):
        if ref.shape != out.shape:
            raise _CheckFailed(
                f"it returns shape {out.shape} where Keras returns {ref.shape}"
            )
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        if np.any(np.isnan(ref64) != np.isnan(out64)):
            diff = math.inf
            continue
        diff = max(diff, float(np.nanmax(np.abs(ref64 - out64), initial=0.0)))
    scale = _output_scale(reference)
    if tolerance is not None:
        criterion, allowed = "tolerance", float(tolerance)
    else:
        atol, rtol = TOLERANCES[fmt]
        criterion = "relative" if fmt in _QUANTIZED else "absolute"
        allowed = atol + rtol * scale
    passed = diff <= allowed
    top1, ties = None, 0
    if criterion == "relative":
        top1, ties = _top1(reference, outputs, allowed)
        passed = passed and (top1 is None or top1 >= MIN_TOP1_AGREEMENT)
    return {
        "max_abs_diff": diff,
        "tolerance": allowed,
        "passed": bool(passed),
        "output_scale": scale,
        "criterion": criterion,
        "top1_agreement": top1,
        "top1_near_ties": ties,
    }


def _failure_message(report: ExportReport, hint: str, strict: bool) -> str:
    message = (
        f"The {report.kind} export to {report.path!r} failed its check. "
        f"{report.verification}.{hint}"
    )
    if report.problem is None:
        message += " Pass `tolerance=` to accept a larger difference."
    if strict:
        return message + " Nothing was written (strict=True)."
    return message + " The file was written anyway (strict=False)."


def _prepare(model, path, kind: str, num_verify, tolerance, strict) -> str:
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
    check_int(num_verify, "num_verify", minimum=1)
    check_bool(strict, "strict")
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
    with _staged(path, directory=kind == "saved_model") as tmp:
        write(tmp)
        fields: dict[str, Any] = {}
        cause = None
        if feed is not None:
            reference = _keras_outputs(model, feed)
            fields["num_verify"] = len(next(iter(feed.values())))
            fields["verify_data"] = verify_data
            try:
                fields.update(_judge(fmt, reference, run(tmp, feed), tolerance))
            except Exception as e:  # a file that cannot be run fails its check
                cause = e
                if isinstance(e, _CheckFailed):
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
            size_bytes=_size(tmp),
            quantization=quantization,
            max_abs_diff=fields.pop("max_abs_diff", None),
            tolerance=fields.pop("tolerance", None),
            passed=fields.pop("passed", None),
            seconds=time.perf_counter() - start,
            **fields,
        )
        if strict and report.passed is False:
            raise ExportCheckError(
                _failure_message(report, hint, strict=True), report
            ) from cause
    if report.passed is False:
        warnings.warn(
            _failure_message(report, hint, strict=False),
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
    path = _prepare(model, path, "keras", num_verify, tolerance, strict)
    check_bool(include_optimizer, "include_optimizer")
    feed = _feed(model, verify, num_verify, representative_data)
    saved = model if include_optimizer else _without_optimizer(model)

    def run(tmp: str, feed: dict) -> list:
        try:
            reloaded = keras.saving.load_model(
                tmp, custom_objects=custom_objects, compile=False
            )
        except Exception as e:  # any reload failure is a failed check
            raise _CheckFailed(
                f"the file does not reload ({type(e).__name__}: {e})",
                " Register custom layers with "
                "`keras.saving.register_keras_serializable()` or pass "
                "`custom_objects=`.",
            ) from e
        # Input names are not kept by a reload (Sequential): match by order.
        pairs = zip(_input_tensors(model), _input_tensors(reloaded), strict=True)
        return _keras_outputs(reloaded, {b.name: feed[a.name] for a, b in pairs})

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
    path = _prepare(model, path, "saved_model", num_verify, tolerance, strict)
    feed = _feed(model, verify, num_verify, representative_data)

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
        verify_data="random" if representative_data is None else "representative",
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
        aliases = {saved: f"<the SavedModel of {model.name!r}>"}
        try:
            with native_output_captured(aliases):
                model.export(saved, format="tf_saved_model", verbose=False)
        except Exception as e:
            reason = without_temporary_paths(str(e), aliases)
            raise RuntimeError(
                f"Keras could not trace {model.name!r} for TFLite conversion: {reason}"
            ) from e
        error = None
        with native_output_captured(aliases) as native:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if quantization is not None:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantization == "float16":
                converter.target_spec.supported_types = [tf.float16]
            elif quantization == "int8":
                converter.representative_dataset = lambda: iter(samples)
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                ]
                if int8_io:
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
            try:
                with warnings.catch_warnings():  # the calibrator's tf.lite.Interpreter
                    warnings.filterwarnings(
                        "ignore", message=r".*tf\.lite\.Interpreter"
                    )
                    return converter.convert()
            except Exception as e:
                error = e
    # Outside the capture: the converter's own log goes with the error.
    failure = RuntimeError(_converter_hint(error, quantization, aliases))
    tail = native.tail()
    if tail and hasattr(failure, "add_note"):
        failure.add_note(f"Converter output:\n{tail}")
    raise failure from error


def _converter_hint(error: Exception, quantization: str | None, aliases) -> str:
    text = without_temporary_paths(str(error), aliases)
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
    path = _prepare(model, path, "tflite", num_verify, tolerance, strict)
    verbose = check_int(verbose, "verbose", minimum=0)
    samples = (
        None if representative_data is None else _samples(representative_data, model)
    )
    feed = None
    if verify:
        _interpreter_class()  # fail early, before converting
        feed = _verification_feed(model, num_verify, samples)
    if verbose:
        say(f"export_tflite: {_converting(model, quantization, samples)}...")
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
