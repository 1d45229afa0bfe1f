"""The unlearning loop: AdamW at a constant lr over epochs of D_f, retain batches cycled alongside.

It knows no method: the spec's traits say whether to build the frozen reference and to read D_r,
the implementation's hooks (base.py) do the rest.
"""

from __future__ import annotations

import logging

import torch

from ..batching import collate, encode, epoch_batches, to_device
from ..config import UnlearnConfig
from ..memory import enable_gradient_checkpointing, frozen_reference, make_optimizer

log = logging.getLogger(__name__)


class _Cycle:
    """Endless shuffled batches over the retain examples (reshuffled each pass, seeded)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.bs, self.gen, self.queue = n, batch_size, generator, []

    def next(self) -> list[int]:
        if not self.queue:
            self.queue = epoch_batches(self.n, self.bs, self.gen)
        return self.queue.pop(0)


def build_method(cfg: UnlearnConfig):
    """The job's method: its spec from the registry, its settings rebuilt (and validated) from
    ``cfg.settings``."""
    from ..registries import METHODS  # imports every plugin module (fills the registry)

    spec = METHODS.get(cfg.method, "unlearn.method")
    settings = spec.resolve(cfg.settings, f"unlearn.methods.{cfg.method}")
    return spec.load()(spec=spec, alpha=cfg.alpha, settings=settings, loss_variant=cfg.loss_variant)


def unlearn(
    model,
    tokenizer,
    forget_texts: list[str],
    retain_texts: list[str],
    cfg: UnlearnConfig,
    seed: int,
    max_length: int,
    progress: bool = True,
) -> dict:
    """Unlearn ``forget_texts`` from ``model`` in place; returns the loss history."""
    from tqdm.auto import tqdm

    method = build_method(cfg)
    spec = method.spec
    device = next(model.parameters()).device
    reference = frozen_reference(model, cfg.reference_device) if spec.reference_outputs else None
    method.setup(model, reference, tokenizer)
    params = method.trainable_parameters(model)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    forget = encode(tokenizer, forget_texts, max_length, cfg.data_format)
    retain = encode(tokenizer, retain_texts, max_length, cfg.data_format) if spec.needs_retain else []
    gen = torch.Generator().manual_seed(seed)
    retain_cycle = _Cycle(len(retain), cfg.batch_size, gen) if retain else None
    opt = make_optimizer(params.values(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    history = {"epochs": [], "steps": 0, "n_forget_chunks": len(forget), "n_retain_chunks": len(retain)}
    pad = tokenizer.pad_token_id
    model.train()
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"unlearn {cfg.method}", unit="epoch", disable=not progress)
    for epoch in bar:
        sums = dict.fromkeys(("forget", "retain", "loss"), 0.0)
        batches = epoch_batches(len(forget), cfg.batch_size, gen)
        for idx in batches:
            fb = to_device(collate([forget[i] for i in idx], pad), device)
            rb = None
            if retain_cycle is not None:
                rb = to_device(collate([retain[i] for i in retain_cycle.next()], pad), device)
            opt.zero_grad(set_to_none=True)
            losses = method.losses(model, reference, fb, rb)
            method.backward(losses, params)
            history.update(method.transform_gradients(params))
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
            opt.step()
            history["steps"] += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
        row = {k: v / len(batches) for k, v in sums.items()}
        history["epochs"].append({"epoch": epoch, **row})
        bar.set_postfix(forget=f"{row['forget']:.3f}", retain=f"{row['retain']:.3f}")
        if not all(torch.isfinite(torch.tensor(v)) for v in row.values()):
            raise FloatingPointError(f"unlearning diverged at epoch {epoch}: {row}")
    model.eval()
    return history
