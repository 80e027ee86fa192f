"""keras-filterprune: structured filter pruning for Keras 3 CNNs.

The public API is re-exported here; users never import private modules.
"""

from keras_filterprune._version import __version__
from keras_filterprune.exceptions import FilterPruneWarning

# --- criteria (issue 2) ---
# --- profile (issue 2) ---
# --- graph, plan, surgery (issue 3) ---
# --- callbacks, schedules (issue 4) ---
# --- export (issue 6) ---
# --- sensitivity, plots (issue 8) ---

__all__ = [
    "__version__",
    "FilterPruneWarning",
]
