"""Gaussian weight noise scaled to the 4-bit RTN step: a direct probe of the paper's argument that
unlearning updates smaller than half a quantization step vanish under rounding.

On every Linear weight of the transformer blocks, each group of ``group_size`` inputs of a row gets
i.i.d. N(0, sigma^2) noise with sigma = c * Delta, Delta = that group's RTN step at ``bits`` bits
(``quantize.rtn.rtn_codes``: max|w| / (2^(bits-1) - 1)). A grid of c.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec


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
