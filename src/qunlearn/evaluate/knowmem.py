"""M2/M4 KnowMem (MUSE): few-shot QA on the forget (M2) and retain (M4) QA sets, greedy answers cut
at the first stop string, ROUGE-L F1 against the answer."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

FORGET = METRICS.register(MetricSpec(
    name="knowmem_f", settings=no_settings(), impl="qunlearn.evaluate.knowmem:compute_forget",
    summary="M2 KnowMem on D_f: few-shot QA, ROUGE-L F1 of the greedy answer",
    source="MUSE (Shi et al. 2024)", key="knowmem_f", column="M2_KnowMem_f", retention=True, order=2))
RETAIN = METRICS.register(MetricSpec(
    name="knowmem_r", settings=no_settings(), impl="qunlearn.evaluate.knowmem:compute_retain",
    summary="M4 KnowMem on D_r: the utility the alpha selection constrains",
    source="MUSE (Shi et al. 2024)", key="knowmem_r", column="M4_KnowMem_r", utility=True, order=4))
