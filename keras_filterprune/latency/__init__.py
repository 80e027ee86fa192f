"""Latency tables: measuring how long each layer takes at each width, and
planning to a latency target with them.

Public names: `LatencyTable` (`latency.table`, plain data: no TensorFlow or
LiteRT is imported with it), `measure_latency_table` (`latency.measure`, times
layers in LiteRT through `keras_filterprune.runtime`) and
`calibrate_latency_plan` (`latency.calibration`). The other modules are this
package's internal API: `latency.schema` (validation of table documents),
`latency.units` (the timed calls of a traced model) and `latency.budget` (how
the planner spends a latency budget).

Names are declared once, in `__init__.pyi`, and loaded on first use
(`lazy_loader.attach_stub`, PEP 562), so that the planner can read tables
without importing the measuring code, and `latency.calibration`, which calls
the planner, makes no import cycle.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
