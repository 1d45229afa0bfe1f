"""Forget-knowledge retention, defined once: the alpha selection (``qunlearn.selection``) and the
retention tables (``report.tables``) both call :func:`forget_retention`.

Retention of an unlearned model = the mean, over the metrics whose spec has ``retention=True``
(M1 VerbMem and M2 KnowMem on the forget set), of its score / the target's score at the same scheme.

A target scoring 0 on a metric (or NaN): the ratio is undefined and there is no
knowledge of that kind to retain, so that metric is left out of the mean and the others still
decide; only when the target scores 0 on every retention metric is retention NaN. (Counting the
ratio as NaN instead would make one unmeasurable metric hide the other, and leave the selection
comparing NaNs.) The function is scale-free: scores may be in [0, 1] (eval JSONs) or x100 (tables).
"""

from __future__ import annotations

import math

from ..registries import METRICS


def retention_metrics() -> list:
    """The metric specs that make up retention, in table order."""
    return sorted((s for s in METRICS.specs() if s.retention), key=lambda s: s.order)


def forget_retention(scores: dict, target: dict) -> float:
    """``scores`` and ``target``: metric key (``verbmem_f``, ``knowmem_f``, ...) -> score."""
    ratios = [scores[s.key] / target[s.key] for s in retention_metrics() if target[s.key] > 0]
    return sum(ratios) / len(ratios) if ratios else math.nan
