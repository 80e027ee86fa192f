"""keras-filterprune: structured filter pruning for Keras 3 CNNs.

Score filters (passive or active criteria), plan which channel groups to shrink,
rebuild the model with physically fewer filters, fine-tune, profile and export it.

The top level holds what the quickstart, the callback and export need; the rest
lives in namespaces: `criteria`, `handlers`, `graph`, `schedules`, `latency`,
`runtime`, `export`, `plots`, `audio`, `models`, `datasets`. Each public name is
declared once, in `__init__.pyi` (the package's type stub), and loaded on first
use (`lazy_loader.attach_stub`, PEP 562), so that `keras-filterprune --help`
answers without importing TensorFlow. The first public name used loads every
public module, which also registers the package's Keras layers (audio
front-ends, `ShortcutPad`) for `keras.saving.load_model`.

Names that moved to a namespace still resolve here for one release, with a
`DeprecationWarning` that names their new home.
"""

import importlib
import importlib.util

import lazy_loader

from keras_filterprune._version import __version__  # noqa: F401
from keras_filterprune.exceptions import FilterPruneWarning  # noqa: F401

_attach_getattr, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
__all__ = [name for name in __all__ if not name.startswith("__")]

# Old top-level name -> the module that now exports it (deprecated here).
_MOVED = {
    **dict.fromkeys(("ChannelGraph", "ChannelGroup", "trace_channels"), "graph"),
    "GroupPlan": "pruning_plan",
    "LayerHandler": "handlers",
    "register_handler": "handlers",
    "weight_masks": "masking",
    **dict.fromkeys(("ConstantRatio", "PolynomialRatio", "RatioSchedule"), "schedules"),
    "ModelProfile": "profile",
    "count_params": "profile",
    **dict.fromkeys(
        (
            "ComparisonReport",
            "LatencyStats",
            "benchmark_keras",
            "benchmark_tflite",
            "compare_models",
            "run_tflite",
        ),
        "runtime",
    ),
    **dict.fromkeys(("ExportReport", "export_saved_model", "save_keras"), "export"),
    **dict.fromkeys(
        ("LatencyTable", "calibrate_latency_plan", "measure_latency_table"), "latency"
    ),
    "SensitivityResult": "sensitivity",
    **dict.fromkeys(("plot_comparison", "plot_sensitivity", "plot_widths"), "plots"),
}
_loaded = False


def _load_all() -> None:
    """Imports every public module once (registering the package's layers)."""
    global _loaded
    _loaded = True
    for name in __all__:
        _attach_getattr(name)


def __getattr__(name: str):
    if name in _MOVED:
        from keras_filterprune._deprecation import deprecated

        home = f"keras_filterprune.{_MOVED[name]}"
        deprecated(
            f"`keras_filterprune.{name}` moved to `{home}.{name}`.", stacklevel=3
        )
        return getattr(importlib.import_module(home), name)
    if name in __all__ and not _loaded and not _is_namespace(name):
        _load_all()  # a namespace (also `from . import criteria` inside the
    return _attach_getattr(name)  # package) loads just that one


def _is_namespace(name: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{name}") is not None
