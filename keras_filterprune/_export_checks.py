"""How exports are judged against Keras, and how the verdict is reported.

The criteria (`TOLERANCES`, `MIN_TOP1_AGREEMENT`, the output scale) are described
in the docstring of `keras_filterprune.export`, whose writers (`save_keras`,
`export_saved_model`, `export_tflite`) run their output, `judge` it and return an
`ExportReport` (or raise an `ExportCheckError`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

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

    Example:

    >>> import os, tempfile, keras
    >>> from keras_filterprune.export import save_keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = save_keras(model, os.path.join(d, "model.keras"))
    >>> report.format, report.kind, report.passed
    ('keras', '.keras', True)
    >>> report.criterion, report.num_verify, report.verify_data
    ('absolute', 8, 'random')
    >>> report.max_abs_diff, report.max_relative_error
    (0.0, 0.0)
    >>> print(report)
    /.../model.keras: .keras, ... KiB, ... s. reloaded .keras file vs the model on
    8 random inputs: max |difference| 0 is within the allowed ... (1e-4 + 1e-5 x
    the output scale ...): passed
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
    written. `error.report` is the `ExportReport` of the file that was not kept.

    Example:

    A model with a custom layer that is not registered
    (`keras.saving.register_keras_serializable`) cannot be reloaded from its
    `.keras` file, so the file is not kept:

    >>> import os, tempfile, keras
    >>> from keras_filterprune.export import ExportCheckError, save_keras
    >>> class Double(keras.layers.Layer):
    ...     def call(self, x):
    ...         return 2 * x
    >>> model = keras.Sequential([keras.Input((4,)), Double(), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "model.keras")
    ...     try:
    ...         save_keras(model, path)
    ...     except ExportCheckError as error:
    ...         report = error.report
    ...     written = os.path.exists(path)
    >>> report.passed, written
    (False, False)
    >>> print(report.problem)
    the file does not reload (...Could not locate class 'Double'...)
    """

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


# ----------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------
class CheckFailed(Exception):
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


def judge(fmt, reference, outputs, tolerance) -> dict[str, Any]:
    """Compares the export's outputs with Keras'; returns `ExportReport` fields."""
    if len(reference) != len(outputs):
        raise CheckFailed(
            f"it has {len(outputs)} outputs, the Keras model {len(reference)}"
        )
    diff = 0.0
    for ref, out in zip(reference, outputs, strict=True):
        if ref.shape != out.shape:
            raise CheckFailed(
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


def failure_message(report: ExportReport, hint: str, strict: bool) -> str:
    message = (
        f"The {report.kind} export to {report.path!r} failed its check. "
        f"{report.verification}.{hint}"
    )
    if report.problem is None:
        message += " Pass `tolerance=` to accept a larger difference."
    if strict:
        return message + " Nothing was written (strict=True)."
    return message + " The file was written anyway (strict=False)."
