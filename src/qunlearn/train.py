"""Fine-tune the target (forget + retain) or the retrain reference (retain only) until memorised."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from .batching import collate, encode_documents, epoch_batches, to_device
from .config import EvalConfig, TrainConfig
from .evaluate.knowmem import knowmem
from .evaluate.verbmem import verbmem

log = logging.getLogger(__name__)


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def memorisation_checks(
    tokenizer,
    qa_sets: dict[str, tuple[list, list]],
    verbmem_items: list[dict] | None,
    cfg: TrainConfig,
    eval_cfg: EvalConfig,
) -> dict[str, tuple[Callable, float]]:
    """{name: (score(model), threshold)}: KnowMem on each trained QA set, VerbMem on trained passages."""
    checks: dict[str, tuple[Callable, float]] = {}
    for name, (qa, icl) in qa_sets.items():
        checks[f"knowmem_{name}"] = (
            lambda m, qa=qa, icl=icl: knowmem(m, tokenizer, qa, icl, eval_cfg)["score"],
            cfg.memorised_threshold,
        )
    if verbmem_items:
        checks["verbmem_forget"] = (
            lambda m: verbmem(m, tokenizer, verbmem_items, eval_cfg)["score"],
            cfg.verbmem_threshold,
        )
    return checks


def _accumulate(model, examples, pad_id: int, cfg: TrainConfig, device):
    """Gradient accumulation over micro-batches: the loss is a token mean, so each micro-batch's
    loss is weighed by its share of the batch's scored tokens (exactly the batch's gradient)."""
    from .unlearn.base import scored_tokens
    from .unlearn.loop import split

    k = math.ceil(len(examples) / cfg.micro_batch_size)
    batches = [collate(chunk, pad_id) for chunk in split(examples, k)]
    total = sum(scored_tokens(b) for b in batches)
    value = 0.0
    for b in batches:
        loss = model(**to_device(b, device)).loss * (scored_tokens(b) / total)
        loss.backward()
        value += loss.item()
    return torch.tensor(value)


def stops_here(epoch: int, scores: dict[str, float], thresholds: dict[str, float], min_epochs: int) -> bool:
    """The stopping rule: from ``min_epochs`` on, the first check at which every score meets its
    threshold.

    One check is a noisy reading near the end of training: greedy generations flip with the last
    bits of the weights, so two machines (or two CPU kernels) read a QA pair or two apart, and the
    first reading above the threshold came 15 epochs apart (docs: Measurements, "Reproducibility
    across CPUs"). Not stopping before ``min_epochs``, an epoch by which the runs have memorised,
    gives every machine the same training length unless a reading there falls short."""
    return epoch >= min_epochs and all(scores[name] >= thr for name, thr in thresholds.items())


def train_until_memorised(
    model,
    tokenizer,
    texts: list[str],
    checks: dict[str, tuple[Callable, float]],
    cfg: TrainConfig,
    seed: int,
    max_length: int,
    progress: bool = True,
) -> dict:
    """Train on ``texts``; every ``check_every`` epochs from ``min_epochs`` on, evaluate each check
    and stop once all reach their thresholds (:func:`stops_here`; then ``extra_epochs`` more).
    Returns the training history."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    examples = encode_documents(tokenizer, texts, max_length)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.max_epochs
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.warmup_steps, total))
    gen = torch.Generator().manual_seed(seed)
    history: dict = {"checks": [], "epochs": 0, "memorised_at_epoch": None, "n_examples": len(examples)}
    stop_at = cfg.max_epochs
    thresholds = {name: thr for name, (_, thr) in checks.items()}
    bar = tqdm(total=cfg.max_epochs, desc="train", unit="epoch", disable=not progress)
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        losses = []
        for idx in epoch_batches(len(examples), cfg.batch_size, gen):
            opt.zero_grad(set_to_none=True)
            if cfg.micro_batch_size is None or len(idx) <= cfg.micro_batch_size:
                batch = to_device(collate([examples[i] for i in idx], tokenizer.pad_token_id), device)
                loss = model(**batch).loss
                loss.backward()
            else:
                loss = _accumulate(model, [examples[i] for i in idx], tokenizer.pad_token_id, cfg, device)
            opt.step()
            sched.step()
            losses.append(loss.item())
        mean_loss = sum(losses) / len(losses)
        history["epochs"] = epoch
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        due = epoch % cfg.check_every == 0 or epoch == cfg.max_epochs
        if history["memorised_at_epoch"] is None and due and epoch >= min(cfg.min_epochs, cfg.max_epochs):
            model.eval()
            scores = {name: round(fn(model), 4) for name, (fn, _) in checks.items()}
            history["checks"].append({"epoch": epoch, "loss": mean_loss, **scores})
            log.info("epoch %d loss %.4f %s", epoch, mean_loss, scores)
            if stops_here(epoch, scores, thresholds, min(cfg.min_epochs, cfg.max_epochs)):
                history["memorised_at_epoch"] = epoch
                stop_at = epoch + cfg.extra_epochs
        if epoch >= stop_at:
            break
    bar.close()
    history["final_loss"] = mean_loss
    if history["memorised_at_epoch"] is None:
        log.warning(
            "not memorised after %d epochs: %s (thresholds %s)",
            cfg.max_epochs,
            history["checks"][-1],
            {n: t for n, (_, t) in checks.items()},
        )
    model.eval()
    return history
