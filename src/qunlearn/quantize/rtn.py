"""Round-to-nearest (RTN) weight quantization, symmetric absmax, per output channel or per group.

For each output row (and each group of ``group_size`` input columns when set):
    Delta = max|w| / qmax,  qmax = 2^(bits-1) - 1,   code = round(w / Delta) in [-qmax, qmax],
    Q(w) = Delta * code.
qmax = 2^(bits-1) - 1 is the absmax convention of LLM.int8 (127 at 8 bits); it keeps every code in
the signed N-bit range and makes RTN idempotent. The paper writes Delta = max|w| / 2^(bits-1),
which would need the code +2^(bits-1) for a positive maximum (outside N bits); see docs/science.md.
The weights stay dense fp tensors holding the dequantized values (simulated quantization), which
is exactly what a deployed RTN kernel computes with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..plugins import QUANTIZERS, QuantizerSpec
from . import check_bits, check_group_size, no_grad, target_linears

if TYPE_CHECKING:
    import torch


@dataclass
class RTNSettings:
    bits: int | None = None  # required, 2..8
    group_size: int | None = None  # input columns per scale; null / 0 = per output channel
    include_lm_head: bool = False

    def validate(self, where: str) -> None:
        check_bits(where, self.bits, self.group_size, "rtn")


SPEC = QUANTIZERS.register(
    QuantizerSpec(
        name="rtn",
        settings=RTNSettings,
        impl="qunlearn.quantize.rtn:RTNQuantizer",
        summary="round-to-nearest, symmetric absmax per output channel or per group",
        source="the paper's RTN (Zhang et al. ICLR 2025)",
    )
)


def _grouped(w: torch.Tensor, group_size: int | None) -> tuple[torch.Tensor, int]:
    """View w (out, in) as (out, n_groups, g), zero-padding the last group if needed."""
    import torch

    out_f, in_f = w.shape
    g = in_f if not group_size else group_size
    pad = (-in_f) % g
    if pad:
        w = torch.nn.functional.pad(w, (0, pad))
    return w.reshape(out_f, -1, g), pad


def rtn_codes(w: torch.Tensor, bits: int, group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer codes (same shape as w, int8) and per-group scales (out, n_groups)."""
    if w.dim() != 2:
        raise ValueError(f"rtn_codes: expected a 2-D weight, got shape {tuple(w.shape)}")
    if not 2 <= bits <= 8:
        raise ValueError(f"rtn_codes: bits must be in 2..8, got {bits}")
    import torch

    qmax = 2 ** (bits - 1) - 1
    wg, pad = _grouped(w.detach().float(), group_size)
    scale = wg.abs().amax(dim=-1) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.clamp(torch.round(wg / scale.unsqueeze(-1)), -qmax, qmax)
    codes = codes.reshape(w.shape[0], -1)
    if pad:
        codes = codes[:, :-pad]
    return codes.to(torch.int8), scale


def rtn_dequantize(codes: torch.Tensor, scale: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    cg, pad = _grouped(codes.float(), group_size)
    w = (cg * scale.unsqueeze(-1)).reshape(codes.shape[0], -1)
    return w[:, :-pad] if pad else w


def rtn_fake_quant(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Q(w) = Delta * round(w / Delta), returned in w's dtype."""
    codes, scale = rtn_codes(w, bits, group_size)
    return rtn_dequantize(codes, scale, group_size).to(w.dtype)


@no_grad
def snap_linears(
    model, bits: int, group_size: int | None, include_lm_head: bool, where: str = "release.snap_group_size"
) -> list[str]:
    """Replace each targeted Linear weight by its RTN dequantization (in place); ``where`` names the
    group-size setting in the error when it does not divide a layer's input width."""
    names = []
    linears = target_linears(model, include_lm_head)
    check_group_size(linears, group_size, where)
    for name, module in linears.items():
        module.weight.copy_(rtn_fake_quant(module.weight, bits, group_size))
        names.append(name)
    return names


class RTNQuantizer:
    def apply(self, model, scheme) -> dict:
        s = scheme.resolved()
        names = snap_linears(
            model, s["bits"], s["group_size"], s["include_lm_head"], f"quantize.schemes.{scheme.name}.group_size"
        )
        return {
            "quantizer": "rtn",
            "bits": s["bits"],
            "group_size": s["group_size"],
            "symmetric": True,
            "include_lm_head": s["include_lm_head"],
            "n_layers": len(names),
        }

    def codes(self, weight: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
        """The integer codes and scales a deployed RTN kernel stores for one weight."""
        s = scheme.resolved()
        codes, scale = rtn_codes(weight, s["bits"], s["group_size"])
        return {"codes": codes, "scale": scale}
