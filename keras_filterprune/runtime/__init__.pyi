# The public names of keras_filterprune.runtime, declared once (loaded lazily by
# `__init__.py` with lazy_loader.attach_stub; read by static tools).
from .benchmark import LatencyStats as LatencyStats
from .benchmark import benchmark_keras as benchmark_keras
from .benchmark import benchmark_tflite as benchmark_tflite
from .compare import ComparisonReport as ComparisonReport
from .compare import compare_models as compare_models
from .litert import run_tflite as run_tflite
