"""M1 VerbMem, M2/M4 KnowMem and the Min-K% PrivLeak scores of one loaded model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import EvalConfig
from ..data import muse_format
from . import metrics
from .generation import greedy_generate, token_logprobs


def _max_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 2048))


def knowmem(model, tokenizer, qa: list[dict], icl: list[dict], cfg: EvalConfig,
            progress: bool = False) -> dict:
    prompts = [metrics.icl_prompt(icl, q["question"]) for q in qa]
    raw = greedy_generate(model, tokenizer, prompts, cfg.knowmem_max_new_tokens, cfg.batch_size,
                          stop_strings=list(metrics.KNOWMEM_STOPS), max_length=_max_length(model),
                          progress=progress)
    items = []
    for q, out in zip(qa, raw):
        answer = metrics.cut_at_stop(out).strip()
        items.append({"question": q["question"], "answer": q["answer"], "output": answer,
                      "score": metrics.rouge_l_f1(answer, q["answer"])})
    return {"score": float(np.mean([it["score"] for it in items])), "items": items}


def verbmem(model, tokenizer, items_in: list[dict], cfg: EvalConfig, progress: bool = False) -> dict:
    n = cfg.verbmem_max_new_tokens
    prompts = [it["prompt"] for it in items_in]
    outs = greedy_generate(model, tokenizer, prompts, n, cfg.batch_size,
                           max_length=_max_length(model), progress=progress)
    items = []
    for it, out in zip(items_in, outs):
        # The reference is the true continuation truncated to the same number of tokens.
        gt_ids = tokenizer(it["gt"], add_special_tokens=False)["input_ids"][:n]
        gt = tokenizer.decode(gt_ids, skip_special_tokens=True)
        items.append({"prompt": it["prompt"], "gt": gt, "output": out,
                      "score": metrics.rouge_l_f1(out, gt)})
    return {"score": float(np.mean([it["score"] for it in items])), "items": items}


def mink_scores(model, tokenizer, texts: list[str], cfg: EvalConfig) -> list[float]:
    lps = token_logprobs(model, tokenizer, texts, cfg.batch_size, _max_length(model))
    return [metrics.min_k_score(lp, cfg.mink_k) for lp in lps]


def evaluate_all(model, tokenizer, data_dir: str | Path, cfg: EvalConfig, progress: bool = True) -> dict:
    """Every metric on one model. Values in [0, 1]; PrivLeak needs the retrain AUC (aggregation)."""
    read = muse_format.read_split
    m1 = verbmem(model, tokenizer, read(data_dir, "verbmem", "forget"), cfg, progress)
    m2 = knowmem(model, tokenizer, read(data_dir, "knowmem", "forget_qa"),
                 read(data_dir, "knowmem", "forget_qa_icl"), cfg, progress)
    m4 = knowmem(model, tokenizer, read(data_dir, "knowmem", "retain_qa"),
                 read(data_dir, "knowmem", "retain_qa_icl"), cfg, progress)
    forget_texts = muse_format.read_texts(data_dir, "privleak", "forget")
    holdout_texts = muse_format.read_texts(data_dir, "privleak", "holdout")
    s_forget = mink_scores(model, tokenizer, forget_texts, cfg)
    s_holdout = mink_scores(model, tokenizer, holdout_texts, cfg)
    auc = metrics.mia_auc(s_forget, s_holdout)
    return {
        "metrics": {"verbmem_f": m1["score"], "knowmem_f": m2["score"], "knowmem_r": m4["score"],
                    "mia_auc": auc},
        "items": {
            "verbmem_f": m1["items"],
            "knowmem_f": m2["items"],
            "knowmem_r": m4["items"],
            "privleak": {"forget_mink": s_forget, "holdout_mink": s_holdout},
        },
    }
