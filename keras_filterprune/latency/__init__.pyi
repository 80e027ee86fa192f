# The public names of keras_filterprune.latency, declared once (loaded lazily by
# `__init__.py` with lazy_loader.attach_stub; read by static tools).
from .calibration import calibrate_latency_plan as calibrate_latency_plan
from .measure import measure_latency_table as measure_latency_table
from .table import LatencyTable as LatencyTable
