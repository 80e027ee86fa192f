"""Running, timing and comparing exported models.

Public names: `run_tflite` (`runtime.litert`), `LatencyStats`,
`benchmark_tflite`, `benchmark_keras` (`runtime.benchmark`), `ComparisonReport`
and `compare_models` (`runtime.compare`). The other modules are this package's
internal API, shared with `keras_filterprune.export` and
`keras_filterprune.latency`: `runtime.litert` (`Runner`, `interpreter_class`,
`sorted_outputs`), `runtime.feeds` (model inputs as `{name: array}` feeds),
`runtime.timing` (`time_calls`) and `runtime.convert` (`convert_tflite`).

Names are loaded on first use (PEP 562): importing one module of the package
(the exporter imports `runtime.litert`) does not import the others, so that
`runtime.compare`, which uses the exporter, makes no import cycle.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - the same names, for static tools
    from keras_filterprune.runtime.benchmark import (
        LatencyStats,
        benchmark_keras,
        benchmark_tflite,
    )
    from keras_filterprune.runtime.compare import ComparisonReport, compare_models
    from keras_filterprune.runtime.litert import run_tflite

__all__ = [
    "ComparisonReport",
    "LatencyStats",
    "benchmark_keras",
    "benchmark_tflite",
    "compare_models",
    "run_tflite",
]

_MODULES = {
    "ComparisonReport": "compare",
    "LatencyStats": "benchmark",
    "benchmark_keras": "benchmark",
    "benchmark_tflite": "benchmark",
    "compare_models": "compare",
    "run_tflite": "litert",
}


def __getattr__(name: str):
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
