"""M1 VerbMem (MUSE): greedy continuation of a forget-set excerpt, ROUGE-L F1 against the true
continuation truncated to the same number of tokens."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

SPEC = METRICS.register(MetricSpec(
    name="verbmem_f", settings=no_settings(), impl="qunlearn.evaluate.verbmem:compute",
    summary="M1 VerbMem on D_f: ROUGE-L F1 of 128 greedy tokens against the true continuation",
    source="MUSE (Shi et al. 2024)", key="verbmem_f", column="M1_VerbMem_f", retention=True, order=1))
