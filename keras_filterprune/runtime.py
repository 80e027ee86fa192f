"""Run, time and compare exported models: the public names of
`keras_filterprune.litert` (`run_tflite`), `keras_filterprune.benchmark`
(`LatencyStats`, `benchmark_tflite`, `benchmark_keras`) and
`keras_filterprune.compare` (`ComparisonReport`, `compare_models`), kept here for
code written against earlier releases."""

from keras_filterprune.benchmark import LatencyStats, benchmark_keras, benchmark_tflite
from keras_filterprune.compare import ComparisonReport, compare_models
from keras_filterprune.litert import run_tflite

__all__ = [
    "ComparisonReport",
    "LatencyStats",
    "benchmark_keras",
    "benchmark_tflite",
    "compare_models",
    "run_tflite",
]
