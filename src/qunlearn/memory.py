"""What it takes to unlearn a 7B model on one or two GPUs (docs/guide/real-scale.md): the optimizer
choice, where the frozen reference lives, gradient checkpointing. Defaults keep the tiny model's
behaviour (torch AdamW, reference beside the model)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


def make_optimizer(params, name: str, lr: float, weight_decay: float):
    """adamw (torch), adamw_8bit (bitsandbytes, states in 8 bits), adafactor (transformers)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        # a constant lr as the paper's AdamW (no relative step, no warmup)
        return Adafactor(
            params, lr=lr, weight_decay=weight_decay, scale_parameter=False, relative_step=False, warmup_init=False
        )
    raise ValueError(f"unlearn.optimizer: {name!r} unknown; use adamw, adamw_8bit or adafactor")


@dataclass
class ReferenceOutput:
    """What the frozen reference returns, on the model's device: ``hidden_states`` (embeddings
    then every layer, as transformers gives them) only when asked with ``output_hidden_states``."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


class OffloadedReference(torch.nn.Module):
    """The frozen reference on another device: inputs go there, logits (and hidden states when
    asked) come back. On the model's device the copy itself is the reference: a transformers model
    returns the same two fields."""

    def __init__(self, model, device: torch.device, home: torch.device):
        super().__init__()
        self.model, self.device, self.home = model, device, home

    @torch.no_grad()
    def forward(self, input_ids, attention_mask=None, **kw):
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=None if attention_mask is None else attention_mask.to(self.device),
            **kw,
        )
        hidden = out.hidden_states
        return ReferenceOutput(
            out.logits.to(self.home), None if hidden is None else tuple(h.to(self.home) for h in hidden)
        )


def frozen_reference(model, device_spec: str = "same"):
    """A frozen copy of ``model`` on ``device_spec`` (same | cpu | cuda:N)."""
    home = next(model.parameters()).device
    target = home if device_spec == "same" else torch.device(device_spec)
    if target.type == "cuda" and (not torch.cuda.is_available() or target.index >= torch.cuda.device_count()):
        raise RuntimeError(
            f"unlearn.reference_device: {device_spec} requested but "
            f"{torch.cuda.device_count()} CUDA device(s) are visible"
        )
    ref = copy.deepcopy(model).to(target).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    if target == home:
        return ref
    log.info("frozen reference on %s (model on %s)", target, home)
    return OffloadedReference(ref, target, home).eval()


def enable_gradient_checkpointing(model) -> None:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
