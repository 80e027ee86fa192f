# The public top level of keras_filterprune, declared once: `__init__.py` loads
# these names lazily from this stub (lazy_loader.attach_stub), and static tools
# read it as the package's types. Everything else lives in the namespaces.
from . import (
    audio as audio,
)
from . import (
    criteria as criteria,
)
from . import (
    datasets as datasets,
)
from . import (
    export as export,
)
from . import (
    graph as graph,
)
from . import (
    handlers as handlers,
)
from . import (
    latency as latency,
)
from . import (
    models as models,
)
from . import (
    plots as plots,
)
from . import (
    runtime as runtime,
)
from . import (
    schedules as schedules,
)
from ._version import __version__ as __version__
from .callbacks import PruningCallback as PruningCallback
from .distillation import Distiller as Distiller
from .exceptions import FilterPruneWarning as FilterPruneWarning
from .export import export_tflite as export_tflite
from .masking import mask_model as mask_model
from .plan import plan_pruning as plan_pruning
from .profile import count_macs as count_macs
from .profile import profile_model as profile_model
from .pruning_plan import PruningPlan as PruningPlan
from .recovery import recalibrate_batchnorm as recalibrate_batchnorm
from .scoring import score_filters as score_filters
from .sensitivity import sensitivity_analysis as sensitivity_analysis
from .surgery import apply_plan as apply_plan
from .surgery import prune_keras_model as prune_keras_model
