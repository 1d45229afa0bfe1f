"""M1 VerbMem (MUSE): greedy continuation of a forget-set excerpt, ROUGE-L F1 against the true
continuation truncated as MUSE truncates it: ``tokenizer(gt)`` *with* its special tokens cut to
``verbmem_max_new_tokens`` ids (with a BOS-adding tokenizer: BOS + 127 text tokens at 128), decoded
without them. ``evaluate.verbmem_decoding: paper_code`` samples at temperature 0.9 instead, as the
paper's release did (docs/science.md)."""

from __future__ import annotations

from ..plugins import METRICS, MetricSpec, no_settings

SPEC = METRICS.register(
    MetricSpec(
        name="verbmem_f",
        settings=no_settings(),
        impl="qunlearn.evaluate.verbmem:compute",
        summary="M1 VerbMem on D_f: ROUGE-L F1 of 128 greedy tokens against the true continuation",
        source="MUSE (Shi et al. 2024)",
        key="verbmem_f",
        column="M1_VerbMem_f",
        retention=True,
        order=1,
    )
)


def compute(model, tokenizer, data_dir, cfg, progress: bool = False) -> dict:
    """M1 on ``verbmem/forget``: per item the prompt, the truncated reference, the output and its score."""
    from ..data import muse_format

    return verbmem(model, tokenizer, muse_format.read_split(data_dir, "verbmem", "forget"), cfg, progress)


def verbmem(model, tokenizer, items_in: list[dict], cfg, progress: bool = False) -> dict:
    """VerbMem of ``items_in`` ({prompt, gt}); also train_base's memorisation check."""
    import numpy as np

    from ..config import VERBMEM_DECODING
    from ..data.muse_format import ENTITY
    from . import metrics
    from .generation import batching_for, greedy_generate, model_max_length

    n = cfg.verbmem_max_new_tokens
    outs = greedy_generate(
        model,
        tokenizer,
        [it["prompt"] for it in items_in],
        n,
        cfg.batch_size,
        max_length=model_max_length(model),
        progress=progress,
        batching=batching_for(model, cfg.half_precision_generation),
        temperature=VERBMEM_DECODING[cfg.verbmem_decoding],
    )
    items = []
    for it, out in zip(items_in, outs):
        gt = reference(tokenizer, it["gt"], n)
        item = {"prompt": it["prompt"], "gt": gt, "output": out, "score": metrics.rouge_l_f1(out, gt)}
        if ENTITY in it:  # whom the passage is about, where the data says (data/entities.py subsets by it)
            item[ENTITY] = it[ENTITY]
        items.append(item)
    return {"score": float(np.mean([it["score"] for it in items])), "items": items}


def reference(tokenizer, gt: str, n: int) -> str:
    """MUSE's reference: ``tokenizer(gt)`` with special tokens, the first ``n`` ids, decoded without
    them (a BOS-adding tokenizer keeps n - 1 text tokens)."""
    return tokenizer.decode(tokenizer(gt)["input_ids"][:n], skip_special_tokens=True)
