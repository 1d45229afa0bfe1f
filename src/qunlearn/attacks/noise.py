"""Gaussian weight noise scaled to the 4-bit RTN step: a direct probe of the paper's argument that
unlearning updates smaller than half a quantization step vanish under rounding.

On every Linear weight of the transformer blocks, each group of ``group_size`` inputs of a row gets
i.i.d. N(0, sigma^2) noise with sigma = c * Delta, Delta = that group's RTN step at ``bits`` bits
(``quantize.rtn.rtn_codes``: max|w| / (2^(bits-1) - 1)). A grid of c.

An all-zero group has no step (``rtn_codes`` gives it the placeholder scale 1, which quantizes
zeros exactly): it gets no noise (sigma 0), so a group pruned away entirely stays zero.

The draw: one CPU ``torch.Generator`` per job, seeded with ``noise_seed(settings.seed, ctx.seed)``
(a hash of the pair, so that two jobs share a noise draw only when both seeds match; the model's
seed varies it across replicates, ``seed`` across draws of one model); the layers draw from it in
``named_modules`` order, each a standard normal of its weight's shape (in float32 on the CPU, the
same bits on every device), then scaled by sigma and added in the weight's dtype. The grid's points
of one model share the draw (common random numbers: only c differs between them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec
from .base import Attack


@dataclass
class NoiseSettings:
    GRID = ("c",)  # the settings that span the grid (id segments, not job params)
    c: list[float] = field(default_factory=lambda: [0.25, 0.5])  # sigma in units of the RTN step
    bits: int = 4
    group_size: int | None = 128  # null: per output channel
    seed: int = 0

    def points(self) -> list[dict[str, str]]:
        return [{"c": fmt_num(c)} for c in self.c]

    def validate(self, where: str) -> None:
        if not self.c or any(c <= 0 for c in self.c) or len({fmt_num(c) for c in self.c}) != len(self.c):
            raise ConfigError(f"{where}.c: a non-empty list of distinct numbers > 0, got {self.c}")
        if not 2 <= self.bits <= 8:
            raise ConfigError(f"{where}.bits: must be in 2..8, got {self.bits}")
        if self.group_size is not None and self.group_size < 1:
            raise ConfigError(f"{where}.group_size: must be >= 1 or null, got {self.group_size}")


def noise_seed(setting_seed: int, job_seed: int) -> int:
    """The generator's seed: the first 8 bytes of sha256("noise:<setting seed>:<job seed>")."""
    digest = hashlib.sha256(f"noise:{setting_seed}:{job_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def group_steps(w, bits: int, group_size: int | None):
    """The RTN step Delta of each weight's group, shape of ``w``; 0 for an all-zero group."""
    import torch

    from ..quantize.rtn import rtn_codes

    codes, scale = rtn_codes(w, bits, group_size)
    width = w.shape[1] if not group_size else group_size
    steps = scale.repeat_interleave(width, dim=1)[:, : w.shape[1]]
    # a group with a non-zero weight has a code of magnitude qmax (its maximum): only an all-zero
    # group has no non-zero code
    nonzero = codes.reshape(w.shape[0], -1, width).abs().amax(dim=-1) > 0
    return torch.where(nonzero.repeat_interleave(width, dim=1)[:, : w.shape[1]], steps, 0.0)


class Noise(Attack):
    """Add N(0, (c * Delta)^2) to every block Linear weight, Delta its group's RTN step."""

    def apply(self, model, ctx) -> dict:
        import torch

        from ..quantize import check_group_size, target_linears

        c = float(self.point["c"])
        s = self.settings
        linears = target_linears(model, include_lm_head=False)
        check_group_size(linears, s.group_size, f"attacks.{self.spec.name}.group_size")
        gen = torch.Generator().manual_seed(noise_seed(s.seed, ctx.seed))
        sigma_sum = ratio_sum = 0.0
        n = n_noised = 0
        with torch.no_grad():
            for module in linears.values():
                w = module.weight
                sigma = c * group_steps(w, s.bits, s.group_size)  # float32, w's device
                z = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.device)
                noise = z * sigma
                w.add_(noise.to(w.dtype))
                noised = sigma > 0
                sigma_sum += float(sigma.sum())
                ratio_sum += float((noise.abs()[noised] / (sigma[noised] / c)).sum())
                n += w.numel()
                n_noised += int(noised.sum())
        return {
            "c": c,
            "bits": s.bits,
            "group_size": s.group_size,
            "generator_seed": noise_seed(s.seed, ctx.seed),
            "n_layers": len(linears),
            "mean_sigma": sigma_sum / n,
            # E|N(0, sigma^2)| / Delta = c sqrt(2 / pi): the draw's realised value
            "mean_abs_noise_over_step": ratio_sum / max(1, n_noised),
            "share_without_noise": round(1 - n_noised / n, 6),
        }


SPEC = ATTACKS.register(
    AttackSpec(
        name="noise",
        settings=NoiseSettings,
        impl="qunlearn.attacks.noise:Noise",
        summary="Gaussian noise on block Linear weights, sigma = c x each group's RTN step",
        source="the paper's half-a-step argument (Zhang et al. ICLR 2025, section 5)",
        strength="c",
    )
)
