"""The unlearning loop: AdamW at a constant lr over epochs of D_f, retain batches cycled alongside."""

from __future__ import annotations

import logging

import torch

from ..batching import collate, encode_documents, epoch_batches, to_device
from ..config import UnlearnConfig
from ..memory import enable_gradient_checkpointing, frozen_reference, make_optimizer
from .registry import get_method
from .sure import apply_masks

log = logging.getLogger(__name__)


class _Cycle:
    """Endless shuffled batches over the retain examples (reshuffled each pass, seeded)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.bs, self.gen, self.queue = n, batch_size, generator, []

    def next(self) -> list[int]:
        if not self.queue:
            self.queue = epoch_batches(self.n, self.bs, self.gen)
        return self.queue.pop(0)


def _kept_fraction(masks: dict) -> float:
    kept = sum(int(m.sum()) for m in masks.values())
    return kept / max(1, sum(m.numel() for m in masks.values()))


def unlearn(model, tokenizer, forget_texts: list[str], retain_texts: list[str], cfg: UnlearnConfig,
            seed: int, max_length: int, progress: bool = True) -> dict:
    """Unlearn ``forget_texts`` from ``model`` in place; returns the loss history."""
    from tqdm.auto import tqdm

    method = get_method(cfg.method, alpha=cfg.alpha, npo_beta=cfg.npo_beta, loss_variant=cfg.loss_variant,
                        sure_percentile=cfg.sure_percentile, sure_level=cfg.sure_level)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    device = next(model.parameters()).device
    ref_model = None
    if method.needs_reference:
        ref_model = frozen_reference(model, cfg.reference_device)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    forget = encode_documents(tokenizer, forget_texts, max_length)
    retain = encode_documents(tokenizer, retain_texts, max_length) if method.needs_retain else []
    gen = torch.Generator().manual_seed(seed)
    retain_cycle = _Cycle(len(retain), cfg.batch_size, gen) if retain else None
    opt = make_optimizer(model.parameters(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    history = {"epochs": [], "steps": 0, "n_forget_chunks": len(forget), "n_retain_chunks": len(retain)}
    pad = tokenizer.pad_token_id
    model.train()
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"unlearn {cfg.method}", unit="epoch", disable=not progress)
    for epoch in bar:
        sums = {"forget": 0.0, "retain": 0.0, "loss": 0.0}
        batches = epoch_batches(len(forget), cfg.batch_size, gen)
        for idx in batches:
            fb = to_device(collate([forget[i] for i in idx], pad), device)
            opt.zero_grad(set_to_none=True)
            loss_f = method.forget_loss(model, ref_model, fb)
            if method.saliency:
                # SURE: the forget gradient alone picks the rows; the retain gradient is added
                # after (one backward each, so the forget gradient is counted once), then masked.
                loss_f.backward()
                masks = method.masks(params)
            loss = loss_f
            if retain_cycle is not None:
                rb = to_device(collate([retain[i] for i in retain_cycle.next()], pad), device)
                loss_r = method.retain_loss(model, ref_model, rb)
                loss = loss_f + cfg.alpha * loss_r
                sums["retain"] += loss_r.item()
            if method.saliency:
                if retain_cycle is not None:
                    (cfg.alpha * loss_r).backward()
                apply_masks(params, masks)
                history["kept_fraction"] = _kept_fraction(masks)
            else:
                loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            history["steps"] += 1
            sums["forget"] += loss_f.item()
            sums["loss"] += loss.item()
        row = {k: v / len(batches) for k, v in sums.items()}
        history["epochs"].append({"epoch": epoch, **row})
        bar.set_postfix(forget=f"{row['forget']:.3f}", retain=f"{row['retain']:.3f}")
        if not all(torch.isfinite(torch.tensor(v)) for v in row.values()):
            raise FloatingPointError(f"unlearning diverged at epoch {epoch}: {row}")
    model.eval()
    return history
