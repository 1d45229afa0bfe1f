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


def load_quantized(model_dir, scheme: SchemeConfig):
    """The model as the scheme deploys it, for evaluation: (model, summary).

    A quantizer with a ``load(model_dir, scheme)`` method quantizes while loading (bitsandbytes:
    the library's own modules); the others load the dense model and ``apply`` in place. Calibrated
    quantizers (GPTQ, AWQ) are not handled here: their checkpoint comes from the quantize rule.
    """
    from ..models import load_model

    quantizer = get_quantizer(scheme.quantizer)
    if getattr(quantizer, "calibrated", False):
        raise ValueError(f"quantizer {scheme.quantizer!r} needs its quantize-rule checkpoint")
    if hasattr(quantizer, "load"):
        return quantizer.load(model_dir, scheme)
    model = load_model(model_dir)
    return model, quantizer.apply(model, scheme)
