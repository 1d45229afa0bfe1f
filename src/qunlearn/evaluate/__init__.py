"""Evaluation: MUSE metrics M1-M4 on a (possibly quantized) model. Each metric is a plugin module
(verbmem, knowmem, privleak: a torch-free spec in ``qunlearn.plugins.METRICS``, its ``compute``
importing torch lazily); runner.evaluate_all runs them all."""

# Importing any one metric module registers every plugin in qunlearn.registries' order (the order
# of the eval JSON and the tables), rather than in whichever order modules happen to be imported.
from .. import registries  # noqa: F401
