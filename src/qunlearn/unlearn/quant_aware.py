"""Quantization-aware unlearning (this project's): the forget term is computed on the model *as a
deployment scheme quantizes it*, the retain term in full precision, so that the deployed model
itself forgets (the paper's failure: unlearning in full precision moves the weights less than one
quantization step, and rounding restores the target).

``<objective>_qa`` for each utility-constrained objective (``ga_gdr_qa``, ``ga_klr_qa``,
``npo_gdr_qa``, ``npo_klr_qa``):

    loss = forget(Q(w); x_f) + alpha * retain(w; x_r)

with Q the RTN of ``quantize/rtn.py`` (symmetric absmax, ``bits`` and ``group_size`` as the scheme
``rtn<bits>`` with that group size; the Linear layers a quantizer touches, lm_head only with
``include_lm_head``). The rounding has no gradient, so Q is applied with a straight-through
estimator: the forward is exactly ``rtn_dequantize(rtn_codes(w))``, the backward passes the gradient
to w unchanged inside the clip range [-qmax * Delta, qmax * Delta] of each group and zero outside
(absmax RTN clips nothing, so it is the identity); the scales are constants of the step. The forward
on Q(w) is a functional call (``torch.func.functional_call``) with the quantized weights in place of
the parameters: the model is not modified and the optimizer updates the full-precision w.

Related work: DurableUn (arXiv 2605.02196) and QUAIL (arXiv 2601.15538) also make unlearning
survive quantization by optimizing through the quantizer. A method without ``alphas`` takes its
objective's selected alpha (``npo_gdr_qa`` -> ``npo_gdr``), as the SURE variants do. One process
only (the functional call needs whole weights; sharded runs are refused at setup).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..plugins import MethodSettings
from ..quantize import check_bits
from .objectives import NPOSettings, ObjectiveMethod, register_variants

if TYPE_CHECKING:
    import torch


@dataclass
class QASettings(MethodSettings):
    """The deployment scheme the forget term sees: RTN at ``bits`` with ``group_size`` (the default
    is ``rtn4``: 4 bits, groups of 128 input columns, lm_head in full precision)."""

    bits: int = 4
    group_size: int | None = 128  # null / 0: per output channel
    include_lm_head: bool = False

    def validate(self, where: str) -> None:
        super().validate(where)
        check_bits(where, self.bits, self.group_size, "rtn")


@dataclass
class NPOQASettings(NPOSettings, QASettings):
    """NPO's beta and the deployment scheme."""


def clip_mask(w: torch.Tensor, scale: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """True where w lies in its group's clip range |w| <= qmax * Delta (a relative 1e-6 of slack for
    the rounding of Delta = max|w| / qmax)."""
    from ..quantize.rtn import _grouped

    qmax = 2 ** (bits - 1) - 1
    wg, pad = _grouped(w.detach().float(), group_size)
    inside = ((wg / scale.unsqueeze(-1)).abs() <= qmax * (1 + 1e-6)).reshape(w.shape[0], -1)
    return inside[:, :-pad] if pad else inside


@functools.cache
def _ste_function():
    import torch

    from ..quantize.rtn import rtn_codes, rtn_dequantize

    class STERoundToNearest(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w, bits, group_size):
            codes, scale = rtn_codes(w, bits, group_size)
            ctx.save_for_backward(clip_mask(w, scale, bits, group_size))
            return rtn_dequantize(codes, scale, group_size).to(w.dtype)

        @staticmethod
        def backward(ctx, grad):
            (inside,) = ctx.saved_tensors
            return grad * inside.to(grad.dtype), None, None

    return STERoundToNearest


def ste_rtn(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """RTN's Q(w) in the forward; the straight-through gradient (identity inside the clip range)."""
    return _ste_function().apply(w, bits, group_size)


class QuantizedView:
    """Calls ``model`` with each targeted Linear weight replaced by its STE quantization (a
    functional call: the parameters themselves stay full precision)."""

    def __init__(self, model, weight_names: list[str], bits: int, group_size: int | None):
        self.model, self.names, self.bits, self.group_size = model, weight_names, bits, group_size

    def __call__(self, **kwargs):
        from torch.func import functional_call

        params = dict(self.model.named_parameters())
        quantized = {n: ste_rtn(params[n], self.bits, self.group_size) for n in self.names}
        return functional_call(self.model, quantized, args=(), kwargs=kwargs)


class QAMethod(ObjectiveMethod):
    """An objective whose forget term is computed through the deployment quantizer."""

    def setup(self, model, reference, tokenizer):
        from .. import distributed
        from ..quantize import target_linears

        if distributed.rank_world()[1] > 1:
            raise NotImplementedError(
                "quantization-aware unlearning runs in one process (unlearn.processes: 1): the functional "
                "call with quantized weights needs whole, unsharded weights"
            )
        names = [f"{n}.weight" for n in target_linears(model, self.settings.include_lm_head)]
        self.view = lambda m: QuantizedView(m, names, self.settings.bits, self.settings.group_size)

    def forget_loss(self, model, reference, batch):
        return super().forget_loss(self.view(model), reference, batch)


register_variants(
    "qa",
    globals(),
    QAMethod,
    QASettings,
    NPOQASettings,
    "quantization-aware: {objective}, the forget term on RTN-quantized weights (STE)",
    "this project; related: DurableUn (arXiv 2605.02196), QUAIL (arXiv 2601.15538)",
    quantization_aware=True,
)
