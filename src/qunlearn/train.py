"""Fine-tune the target (forget + retain) or the retrain reference (retain only) until memorised."""

from __future__ import annotations

import logging
import math

import torch

from .batching import collate, encode_documents, epoch_batches, to_device
from .config import EvalConfig, TrainConfig
from .evaluate.runner import knowmem

log = logging.getLogger(__name__)


def lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def train_until_memorised(model, tokenizer, texts: list[str], qa_sets: dict[str, tuple[list, list]],
                          cfg: TrainConfig, eval_cfg: EvalConfig, seed: int, max_length: int,
                          progress: bool = True) -> dict:
    """Train on ``texts``; every ``check_every`` epochs measure KnowMem on each QA set in
    ``qa_sets`` ({name: (qa, icl)}) and stop once all reach ``memorised_threshold``
    (then ``extra_epochs`` more). Returns the training history."""
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
    bar = tqdm(total=cfg.max_epochs, desc="train", unit="epoch", disable=not progress)
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        losses = []
        for idx in epoch_batches(len(examples), cfg.batch_size, gen):
            batch = to_device(collate([examples[i] for i in idx], tokenizer.pad_token_id), device)
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        mean_loss = sum(losses) / len(losses)
        history["epochs"] = epoch
        bar.update(1)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        if history["memorised_at_epoch"] is None and (epoch % cfg.check_every == 0 or epoch == cfg.max_epochs):
            model.eval()
            scores = {name: knowmem(model, tokenizer, qa, icl, eval_cfg)["score"]
                      for name, (qa, icl) in qa_sets.items()}
            history["checks"].append({"epoch": epoch, "loss": mean_loss, **scores})
            log.info("epoch %d loss %.4f knowmem %s", epoch, mean_loss, scores)
            if all(s >= cfg.memorised_threshold for s in scores.values()):
                history["memorised_at_epoch"] = epoch
                stop_at = epoch + cfg.extra_epochs
        if epoch >= stop_at:
            break
    bar.close()
    history["final_loss"] = mean_loss
    if history["memorised_at_epoch"] is None:
        log.warning("not memorised after %d epochs (threshold %.2f): %s", cfg.max_epochs,
                    cfg.memorised_threshold, history["checks"][-1])
    model.eval()
    return history
