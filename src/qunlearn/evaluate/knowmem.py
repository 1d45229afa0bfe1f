"""M2/M4 KnowMem (MUSE): few-shot QA on the forget (M2) and retain (M4) QA sets, greedy answers cut
at the first stop string, ROUGE-L F1 against the answer."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

FORGET = METRICS.register(
    MetricSpec(
        name="knowmem_f",
        settings=no_settings(),
        impl="qunlearn.evaluate.knowmem:compute_forget",
        summary="M2 KnowMem on D_f: few-shot QA, ROUGE-L F1 of the greedy answer",
        source="MUSE (Shi et al. 2024)",
        key="knowmem_f",
        column="M2_KnowMem_f",
        retention=True,
        order=2,
    )
)
RETAIN = METRICS.register(
    MetricSpec(
        name="knowmem_r",
        settings=no_settings(),
        impl="qunlearn.evaluate.knowmem:compute_retain",
        summary="M4 KnowMem on D_r: the utility the alpha selection constrains",
        source="MUSE (Shi et al. 2024)",
        key="knowmem_r",
        column="M4_KnowMem_r",
        utility=True,
        order=4,
    )
)


def knowmem(model, tokenizer, qa: list[dict], icl: list[dict], cfg, progress: bool = False) -> dict:
    """Few-shot greedy answers to ``qa`` (``icl`` pairs as shots), cut at the first stop string."""
    import numpy as np

    from ..data.muse_format import ENTITY
    from . import metrics
    from .generation import batching_for, greedy_generate, model_max_length

    prompts = [metrics.icl_prompt(icl, q["question"]) for q in qa]
    raw = greedy_generate(
        model,
        tokenizer,
        prompts,
        cfg.knowmem_max_new_tokens,
        cfg.batch_size,
        stop_strings=list(metrics.KNOWMEM_STOPS),
        max_length=model_max_length(model),
        progress=progress,
        batching=batching_for(model, cfg.half_precision_generation),
    )
    items = []
    for q, out in zip(qa, raw):
        answer = metrics.cut_at_stop(out).strip()
        item = {
            "question": q["question"],
            "answer": q["answer"],
            "output": answer,
            "score": metrics.rouge_l_f1(answer, q["answer"]),
        }
        if ENTITY in q:  # whom the question is about, where the data says (data/entities.py subsets by it)
            item[ENTITY] = q[ENTITY]
        items.append(item)
    return {"score": float(np.mean([it["score"] for it in items])), "items": items}


def _on_split(side: str, model, tokenizer, data_dir, cfg, progress: bool) -> dict:
    from ..data import muse_format

    return knowmem(
        model,
        tokenizer,
        muse_format.read_split(data_dir, "knowmem", f"{side}_qa"),
        muse_format.read_split(data_dir, "knowmem", f"{side}_qa_icl"),
        cfg,
        progress,
    )


def compute_forget(model, tokenizer, data_dir, cfg, progress: bool = False) -> dict:
    """M2 on ``knowmem/forget_qa`` with the ``forget_qa_icl`` shots."""
    return _on_split("forget", model, tokenizer, data_dir, cfg, progress)


def compute_retain(model, tokenizer, data_dir, cfg, progress: bool = False) -> dict:
    """M4 on ``knowmem/retain_qa`` with the ``retain_qa_icl`` shots."""
    return _on_split("retain", model, tokenizer, data_dir, cfg, progress)
