"""keras-filterprune: structured filter pruning for Keras 3 CNNs.

Score filters (passive or active criteria), plan which channel groups to shrink,
rebuild the model with physically fewer filters, fine-tune, profile and export it.
The public API is re-exported here; users never import private modules.
"""

from keras_filterprune import audio, criteria, datasets, models
from keras_filterprune._version import __version__
from keras_filterprune.benchmark import LatencyStats, benchmark_keras, benchmark_tflite
from keras_filterprune.callbacks import PruningCallback
from keras_filterprune.compare import ComparisonReport, compare_models
from keras_filterprune.exceptions import FilterPruneWarning
from keras_filterprune.export import (
    ExportReport,
    export_saved_model,
    export_tflite,
    save_keras,
)
from keras_filterprune.graph import ChannelGraph, ChannelGroup, trace_channels
from keras_filterprune.handlers import LayerHandler, register_handler
from keras_filterprune.litert import run_tflite
from keras_filterprune.plan import GroupPlan, PruningPlan, plan_pruning
from keras_filterprune.plots import plot_comparison, plot_sensitivity, plot_widths
from keras_filterprune.profile import (
    ModelProfile,
    count_macs,
    count_params,
    profile_model,
)
from keras_filterprune.schedules import ConstantRatio, PolynomialRatio, RatioSchedule
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
    # training
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
    "benchmark_keras",
    "benchmark_tflite",
    "compare_models",
    "export_saved_model",
    "export_tflite",
    "run_tflite",
    "save_keras",
    # sensitivity and plots
    "SensitivityResult",
    "plot_comparison",
    "plot_sensitivity",
    "plot_widths",
    "sensitivity_analysis",
]
