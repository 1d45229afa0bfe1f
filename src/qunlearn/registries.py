"""Every plugin module, imported once: importing this module fills ``qunlearn.plugins.METHODS``,
``QUANTIZERS`` and ``METRICS``. Adding a plugin = its module + one line here. Torch-free."""

from __future__ import annotations

import importlib

from .plugins import METHODS, METRICS, QUANTIZERS  # noqa: F401  (re-exported)

PLUGIN_MODULES = (
    # unlearning methods
    "qunlearn.unlearn.objectives",
    "qunlearn.unlearn.sure",
    "qunlearn.unlearn.simnpo",
    # quantizers
    "qunlearn.quantize.none",
    "qunlearn.quantize.cast",
    "qunlearn.quantize.rtn",
    "qunlearn.quantize.bnb",
    "qunlearn.quantize.llmc",
    # metrics
    "qunlearn.evaluate.verbmem",
    "qunlearn.evaluate.knowmem",
    "qunlearn.evaluate.privleak",
    "qunlearn.evaluate.utility",
)

for _module in PLUGIN_MODULES:
    importlib.import_module(_module)
