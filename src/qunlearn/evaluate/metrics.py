"""Pure metric functions, following MUSE's conventions (reported x100 by the aggregation)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

KNOWMEM_STOPS = ("\n\n", "\nQuestion", "Question:")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (rouge_score, no stemming), in [0, 1]."""
    return float(_scorer().score(reference, prediction)["rougeL"].fmeasure)


def cut_at_stop(text: str, stops=KNOWMEM_STOPS) -> str:
    """Keep the answer up to the first stop string (MUSE's KnowMem post-processing)."""
    cut = len(text)
    for stop in stops:
        idx = text.find(stop)
        if idx != -1:
            cut = min(cut, idx)
    return text[:cut]


def icl_prompt(icl_pairs: list[dict], question: str) -> str:
    """Few-shot prompt: every ICL pair as "Question: q\\nAnswer: a\\n\\n", then the question."""
    shots = "".join(f"Question: {p['question']}\nAnswer: {p['answer']}\n\n" for p in icl_pairs)
    return f"{shots}Question: {question}\nAnswer: "


def min_k_score(token_logprobs, k: float = 0.4) -> float:
    """Min-K% Prob: minus the mean of the lowest k-fraction of token log-probs (higher = less member-like)."""
    lp = np.sort(np.asarray(token_logprobs, dtype=np.float64))
    if lp.size == 0:
        raise ValueError("min_k_score: empty token log-prob sequence")
    n = max(1, int(lp.size * k))
    return float(-lp[:n].mean())


def mia_auc(forget_scores, holdout_scores) -> float:
    """MUSE's AUC: labels forget=0, holdout=1, prediction -score; memorised D_f gives AUC near 0.

    Computed exactly as the Mann-Whitney U statistic over the prediction ranks (ties get their
    average rank, i.e. count one half), U / (n_forget * n_holdout): the area under the ROC curve
    that ``sklearn.metrics.roc_auc_score`` computes, without sklearn."""
    n0, n1 = len(forget_scores), len(holdout_scores)
    if n0 == 0 or n1 == 0:
        raise ValueError(f"mia_auc: need forget and holdout scores, got {n0} and {n1}")
    preds = -np.concatenate([np.asarray(forget_scores, dtype=np.float64), np.asarray(holdout_scores, dtype=np.float64)])
    _, group, counts = np.unique(preds, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    ranks = (ends - (counts - 1) / 2.0)[group]  # average rank within the group
    u = ranks[n0:].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n0 * n1))


def privleak(auc_model: float, auc_retrain: float) -> float:
    """PrivLeak in percent: (AUC_model - AUC_retrain) / AUC_retrain * 100; 0 is ideal."""
    if auc_retrain <= 0 or math.isnan(auc_retrain):
        raise ValueError(f"privleak: reference AUC must be > 0, got {auc_retrain}")
    return (auc_model - auc_retrain) / auc_retrain * 100.0
