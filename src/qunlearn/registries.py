"""Every plugin module, imported once: importing this module fills ``qunlearn.plugins.METHODS``,
``QUANTIZERS``, ``METRICS`` and ``ATTACKS``. Adding a plugin = its module + one line here. Torch-free."""

from __future__ import annotations

import importlib

from .plugins import ATTACKS, METHODS, METRICS, QUANTIZERS  # noqa: F401  (re-exported)

PLUGIN_MODULES = (
    # unlearning methods
    "qunlearn.unlearn.objectives",
    "qunlearn.unlearn.sure",
    "qunlearn.unlearn.simnpo",
    "qunlearn.unlearn.pruning",
    "qunlearn.unlearn.task_vector",
    "qunlearn.unlearn.rmu",
    "qunlearn.unlearn.blur",
    "qunlearn.unlearn.quant_aware",
    "qunlearn.unlearn.lora_fila",
    "qunlearn.unlearn.surgery",
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
    # recovery attacks
    "qunlearn.attacks.finetune",
    "qunlearn.attacks.prune",
    "qunlearn.attacks.noise",
    "qunlearn.attacks.interpolate",
)

for _module in PLUGIN_MODULES:
    importlib.import_module(_module)
