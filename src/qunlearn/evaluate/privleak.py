"""M3 PrivLeak (MUSE): Min-K% Prob membership inference, AUC of forget vs holdout texts; the
reported PrivLeak is (AUC - AUC_retrain) / AUC_retrain x 100, computed at aggregation against the
retrain model at ``report.privleak_reference_scheme``."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

SPEC = METRICS.register(MetricSpec(
    name="privleak", settings=no_settings(), impl="qunlearn.evaluate.privleak:compute",
    summary="M3 PrivLeak: Min-K% (k = evaluate.mink_k) MIA AUC relative to the retrain model's",
    source="MUSE (Shi et al. 2024); Min-K% Prob: Shi et al. 2023", key="mia_auc", column="M3_PrivLeak",
    scale=1.0, relative_to="retrain", order=3))
