"""The quantizer registry: scheme config ``quantizer: NAME`` -> a registered Quantizer."""

from __future__ import annotations

import torch

from ..config import SchemeConfig
from ..registry import Registry

QUANTIZERS = Registry("quantizer")
register = QUANTIZERS.register


def get_quantizer(name: str):
    return QUANTIZERS.create(name)


def target_linears(model, include_lm_head: bool) -> dict[str, torch.nn.Linear]:
    """The Linear layers a weight quantizer touches: the transformer blocks' (and lm_head if asked).
    Embeddings and norms are never Linear, so they stay untouched."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if name.split(".")[-1] == "lm_head" and not include_lm_head:
                continue
            out[name] = module
    return out


def quantize_model(model, scheme: SchemeConfig) -> dict:
    """Quantize ``model`` in place as ``scheme`` says; returns a summary for meta/eval JSON."""
    return get_quantizer(scheme.quantizer).apply(model, scheme)
