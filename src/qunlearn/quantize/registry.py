"""The quantizer registry: scheme config ``quantizer: NAME`` -> a registered Quantizer."""

from __future__ import annotations

from typing import Callable

import torch

from ..config import SchemeConfig

QUANTIZERS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in QUANTIZERS:
            raise ValueError(f"quantizer {name!r} registered twice")
        cls.name = name
        QUANTIZERS[name] = cls
        return cls

    return deco


def get_quantizer(name: str):
    try:
        return QUANTIZERS[name]()
    except KeyError:
        raise KeyError(f"unknown quantizer {name!r}; registered: {', '.join(sorted(QUANTIZERS))}") from None


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
