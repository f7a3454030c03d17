"""Graph passes.  Importing this package registers every pass in ``PASSES``."""
from .base import PASSES, PassContext, PassError, graph_pass, run_pass, run_pipeline  # noqa: F401
from . import balance_thresholds, fold_avgpool, fold_batchnorm, fold_linear_layers, spike_norm  # noqa: F401
