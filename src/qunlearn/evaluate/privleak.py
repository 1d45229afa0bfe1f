"""M3 PrivLeak (MUSE): Min-K% Prob membership inference, AUC of forget vs holdout texts; the
reported PrivLeak is (AUC - AUC_retrain) / AUC_retrain x 100, computed at aggregation against the
retrain model at ``report.privleak_reference_scheme``."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

SPEC = METRICS.register(
    MetricSpec(
        name="privleak",
        settings=no_settings(),
        impl="qunlearn.evaluate.privleak:compute",
        summary="M3 PrivLeak: Min-K% (k = evaluate.mink_k) MIA AUC relative to the retrain model's",
        source="MUSE (Shi et al. 2024); Min-K% Prob: Shi et al. 2023",
        key="mia_auc",
        column="M3_PrivLeak",
        scale=1.0,
        relative_to="retrain",
        order=3,
    )
)


def mink_scores(model, tokenizer, texts: list[str], cfg) -> list[float]:
    """Min-K% Prob score of every text (k = ``cfg.mink_k``)."""
    from . import metrics
    from .generation import model_max_length, token_logprobs

    lps = token_logprobs(model, tokenizer, texts, cfg.batch_size, model_max_length(model))
    return [metrics.min_k_score(lp, cfg.mink_k) for lp in lps]


def compute(model, tokenizer, data_dir, cfg, progress: bool = False) -> dict:
    """The MIA AUC of ``privleak/forget`` (members) against ``privleak/holdout`` (non-members); the
    items are both score lists, so the AUC can be recomputed from an eval JSON."""
    from ..data import muse_format
    from . import metrics

    forget = mink_scores(model, tokenizer, muse_format.read_texts(data_dir, "privleak", "forget"), cfg)
    holdout = mink_scores(model, tokenizer, muse_format.read_texts(data_dir, "privleak", "holdout"), cfg)
    return {"score": metrics.mia_auc(forget, holdout), "items": {"forget_mink": forget, "holdout_mink": holdout}}
