"""Weight quantizers. Each quantizer is one plugin module (none, cast, rtn, bnb, llmc) that declares
its settings dataclass and registers a :class:`~qunlearn.plugins.QuantizerSpec` at import, torch-free;
its implementation class (``apply``/``codes``, optionally ``load`` or ``calibrate``) sits in the same
module and imports torch and its library only when called. Adding a quantizer: its module, one line
in ``qunlearn.registries`` and one enum entry in workflow/schemas/config.schema.yaml.

What a job calls lives here, importing torch lazily too (plugin modules import this package first).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..config import ConfigError

if TYPE_CHECKING:
    import torch

    from ..plugins import Scheme


def check_bits(where: str, bits: int | None, group_size: int | None, quantizer: str) -> None:
    """The checks every integer weight quantizer (rtn, gptq, awq) shares."""
    if bits is None:
        raise ConfigError(f"{where}.bits: quantizer {quantizer!r} needs bits (2-8)")
    if not 2 <= bits <= 8:
        raise ConfigError(f"{where}.bits: must be in 2..8, got {bits}")
    if group_size is not None and group_size < 0:
        raise ConfigError(f"{where}.group_size: must be >= 0, got {group_size}")


def check_group_size(linears: dict, group_size: int | None, where: str) -> None:
    """Each layer's input width is a multiple of ``group_size`` (null / 0: per channel, always fine).
    The config check (Experiment) does this for the trained tiny model; this one runs when a job
    holds the model (a base taken as published has widths unknown at parse time). The error names
    the setting and the layer."""
    if not group_size:
        return
    for name, module in linears.items():
        if module.in_features % group_size:
            raise ConfigError(
                f"{where}: group size {group_size} does not divide the input width {module.in_features} "
                f"of layer {name}; use a divisor of every layer's input width (or null: per channel)"
            )


def no_grad(fn):
    """``torch.no_grad()`` as a decorator that imports torch only when ``fn`` runs (a module-level
    ``@torch.no_grad()`` would import torch with the plugin's spec)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        with torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper


def implementation(scheme: Scheme):
    """An instance of the scheme's quantizer implementation (imports its module, hence torch)."""
    return scheme.spec.load()()


def target_linears(model, include_lm_head: bool) -> dict[str, torch.nn.Linear]:
    """The Linear layers a weight quantizer touches: the transformer blocks' (and lm_head if asked).
    Embeddings and norms are never Linear, so they stay untouched."""
    import torch

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if name.split(".")[-1] == "lm_head" and not include_lm_head:
                continue
            out[name] = module
    return out


def quantize_model(model, scheme: Scheme) -> dict:
    """Quantize ``model`` in place as ``scheme`` says; returns a summary for meta/eval JSON."""
    return implementation(scheme).apply(model, scheme)


def load_quantized(model_dir, scheme: Scheme):
    """The model as the scheme deploys it, for evaluation: (model, summary).

    A quantizer with a ``load(model_dir, scheme)`` method quantizes while loading (bitsandbytes:
    the library's own modules); the others load the dense model and ``apply`` in place. Calibrated
    quantizers (GPTQ, AWQ) are not handled here: their checkpoint comes from the quantize rule.
    """
    from ..models import load_model

    if scheme.calibrated:
        raise ValueError(f"quantizer {scheme.quantizer!r} needs its quantize-rule checkpoint")
    quantizer = implementation(scheme)
    if hasattr(quantizer, "load"):
        return quantizer.load(model_dir, scheme)
    model = load_model(model_dir)
    return model, quantizer.apply(model, scheme)


# Last, after what the plugin modules import from here: importing any one quantizer module (say
# qunlearn.quantize.rtn) registers every plugin in qunlearn.registries' order, the order reports
# sort schemes by, rather than in whichever order modules happen to be imported.
from .. import registries  # noqa: E402,F401
