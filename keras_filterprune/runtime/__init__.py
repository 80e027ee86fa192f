"""Running, timing and comparing exported models.

Public names: `run_tflite` (`runtime.litert`), `LatencyStats`,
`benchmark_tflite`, `benchmark_keras` (`runtime.benchmark`), `ComparisonReport`
and `compare_models` (`runtime.compare`). The other modules are this package's
internal API, shared with `keras_filterprune.export` and
`keras_filterprune.latency`: `runtime.litert` (`Runner`, `interpreter_class`,
`sorted_outputs`), `runtime.feeds` (model inputs as `{name: array}` feeds),
`runtime.timing` (`time_rounds`, `median_ci`) and `runtime.convert` (`convert_tflite`).

Names are declared once, in `__init__.pyi`, and loaded on first use
(`lazy_loader.attach_stub`, PEP 562): importing one module of the package
(the exporter imports `runtime.litert`) does not import the others, so that
`runtime.compare`, which uses the exporter, makes no import cycle.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
