"""keras-filterprune: structured filter pruning for Keras 3 CNNs.

Score filters (passive or active criteria), plan which channel groups to shrink,
rebuild the model with physically fewer filters, fine-tune, profile and export it.
The public API is re-exported here; users never import private modules.

Names are loaded on first use (PEP 562), so that `keras-filterprune --help` answers
without importing TensorFlow. The first public name used loads the whole package,
which also registers its Keras layers (audio front-ends, `ShortcutPad`) for
`keras.saving.load_model`.
"""

from typing import TYPE_CHECKING

from keras_filterprune._version import __version__
from keras_filterprune.exceptions import FilterPruneWarning

if TYPE_CHECKING:  # pragma: no cover - the same names, for static tools
    from keras_filterprune import audio, criteria, datasets, models
    from keras_filterprune.callbacks import PruningCallback
    from keras_filterprune.export import (
        ExportReport,
        export_saved_model,
        export_tflite,
        save_keras,
    )
    from keras_filterprune.graph import ChannelGraph, ChannelGroup, trace_channels
    from keras_filterprune.handlers import LayerHandler, register_handler
    from keras_filterprune.latency.calibration import calibrate_latency_plan
    from keras_filterprune.latency.measure import measure_latency_table
    from keras_filterprune.latency.table import LatencyTable
    from keras_filterprune.plan import GroupPlan, PruningPlan, plan_pruning
    from keras_filterprune.plots import plot_comparison, plot_sensitivity, plot_widths
    from keras_filterprune.profile import (
        ModelProfile,
        count_macs,
        count_params,
        profile_model,
    )
    from keras_filterprune.recovery import Distiller, recalibrate_batchnorm
    from keras_filterprune.runtime.benchmark import (
        LatencyStats,
        benchmark_keras,
        benchmark_tflite,
    )
    from keras_filterprune.runtime.compare import ComparisonReport, compare_models
    from keras_filterprune.runtime.litert import run_tflite
    from keras_filterprune.schedules import (
        ConstantRatio,
        PolynomialRatio,
        RatioSchedule,
    )
    from keras_filterprune.scoring import score_filters
    from keras_filterprune.sensitivity import SensitivityResult, sensitivity_analysis
    from keras_filterprune.surgery import (
        apply_plan,
        mask_model,
        prune_keras_model,
        weight_masks,
    )

__all__ = [
    "__version__",
    "FilterPruneWarning",
    # subpackages
    "audio",
    "criteria",
    "datasets",
    "models",
    # scoring, graph, plan, surgery
    "ChannelGraph",
    "ChannelGroup",
    "GroupPlan",
    "LayerHandler",
    "PruningPlan",
    "apply_plan",
    "mask_model",
    "plan_pruning",
    "prune_keras_model",
    "register_handler",
    "score_filters",
    "trace_channels",
    "weight_masks",
    # training and recovery
    "Distiller",
    "recalibrate_batchnorm",
    "ConstantRatio",
    "PolynomialRatio",
    "PruningCallback",
    "RatioSchedule",
    # profile
    "ModelProfile",
    "count_macs",
    "count_params",
    "profile_model",
    # export and runtime
    "ComparisonReport",
    "ExportReport",
    "LatencyStats",
    "LatencyTable",
    "benchmark_keras",
    "benchmark_tflite",
    "calibrate_latency_plan",
    "compare_models",
    "export_saved_model",
    "export_tflite",
    "measure_latency_table",
    "run_tflite",
    "save_keras",
    # sensitivity and plots
    "SensitivityResult",
    "plot_comparison",
    "plot_sensitivity",
    "plot_widths",
    "sensitivity_analysis",
]


_SUBPACKAGES = ("audio", "criteria", "datasets", "models")
_MODULES = {
    "keras_filterprune.callbacks": "PruningCallback",
    "keras_filterprune.export": "ExportReport export_saved_model export_tflite "
    "save_keras",
    "keras_filterprune.graph": "ChannelGraph ChannelGroup trace_channels",
    "keras_filterprune.handlers": "LayerHandler register_handler",
    "keras_filterprune.latency.calibration": "calibrate_latency_plan",
    "keras_filterprune.latency.measure": "measure_latency_table",
    "keras_filterprune.latency.table": "LatencyTable",
    "keras_filterprune.plan": "GroupPlan PruningPlan plan_pruning",
    "keras_filterprune.plots": "plot_comparison plot_sensitivity plot_widths",
    "keras_filterprune.profile": "ModelProfile count_macs count_params profile_model",
    "keras_filterprune.recovery": "Distiller recalibrate_batchnorm",
    "keras_filterprune.runtime.benchmark": "LatencyStats benchmark_keras "
    "benchmark_tflite",
    "keras_filterprune.runtime.compare": "ComparisonReport compare_models",
    "keras_filterprune.runtime.litert": "run_tflite",
    "keras_filterprune.schedules": "ConstantRatio PolynomialRatio RatioSchedule",
    "keras_filterprune.scoring": "score_filters",
    "keras_filterprune.sensitivity": "SensitivityResult sensitivity_analysis",
    "keras_filterprune.surgery": "apply_plan mask_model prune_keras_model weight_masks",
}


def _load() -> None:
    """Imports every public module once and binds the public names here."""
    import importlib

    for sub in _SUBPACKAGES:
        globals()[sub] = importlib.import_module(f"keras_filterprune.{sub}")
    for module_name, names in _MODULES.items():
        module = importlib.import_module(module_name)
        for name in names.split():
            globals()[name] = getattr(module, name)


def __getattr__(name: str):
    if name in _SUBPACKAGES:  # also `from keras_filterprune import criteria`
        import importlib  # inside the package's own modules: load just that one

        return importlib.import_module(f"keras_filterprune.{name}")
    if name in __all__:
        _load()
        return globals()[name]
    raise AttributeError(f"module 'keras_filterprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
