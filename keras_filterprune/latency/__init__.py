"""Latency tables: measuring how long each layer takes at each width, and
planning to a latency target with them.

Public names: `LatencyTable` (`latency.table`, plain data: no TensorFlow or
LiteRT is imported with it), `measure_latency_table` (`latency.measure`, times
layers in LiteRT through `keras_filterprune.runtime`) and
`calibrate_latency_plan` (`latency.calibration`). The other modules are this
package's internal API: `latency.schema` (validation of table documents),
`latency.units` (the timed calls of a traced model) and `latency.budget` (how
the planner spends a latency budget).

Names are loaded on first use (PEP 562), so that the planner can read tables
without importing the measuring code, and `latency.calibration`, which calls
the planner, makes no import cycle.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - the same names, for static tools
    from keras_filterprune.latency.calibration import calibrate_latency_plan
    from keras_filterprune.latency.measure import measure_latency_table
    from keras_filterprune.latency.table import LatencyTable

__all__ = ["LatencyTable", "calibrate_latency_plan", "measure_latency_table"]

_MODULES = {
    "LatencyTable": "table",
    "calibrate_latency_plan": "calibration",
    "measure_latency_table": "measure",
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
