"""Pruning attacks (SAU, arXiv 2602.00577: sparsifying an unlearned model brings answers back).

Per Linear layer of the transformer blocks (attention and MLP projections; not embeddings, norms
or lm_head):
- ``magnitude``: zero the ``sparsity`` share of each weight matrix with the smallest |W|;
- ``wanda`` (Sun et al. 2024): score |W_ij| * ||X_j||_2 (the input activation's norm over
  calibration tokens), zero the smallest ``sparsity`` share of each output row;
- a sparsity of ``"2:4"``: in every group of 4 consecutive inputs of a row, zero the 2 with the
  lowest score (NVIDIA's semi-structured pattern), by the criterion's score.
Calibration text (Wanda) comes from a non-forget split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec
from .base import check_split

CRITERIA = ("magnitude", "wanda")
SEMI_STRUCTURED = "2:4"
SEMI_STRUCTURED_ID = "2of4"  # its text in a model id (no ':' in paths)


@dataclass
class PruneSettings:
    GRID = ("criteria", "sparsities")  # the settings that span the grid (id segments, not job params)
    criteria: list[str] = field(default_factory=lambda: ["magnitude"])
    sparsities: list[float | str] = field(default_factory=lambda: [0.5])  # numbers in (0, 1) or "2:4"
    calibration_split: str = "retain2"  # wanda only
    calibration_samples: int = 32
    calibration_seed: int = 0
    calibration_max_length: int = 256

    def points(self) -> list[dict[str, str]]:
        return [
            {"criterion": c, "sparsity": SEMI_STRUCTURED_ID if s == SEMI_STRUCTURED else fmt_num(s)}
            for c in self.criteria
            for s in self.sparsities
        ]

    def validate(self, where: str) -> None:
        for c in self.criteria:
            if c not in CRITERIA:
                raise ConfigError(f"{where}.criteria: unknown criterion {c!r}; one of {', '.join(CRITERIA)}")
        if not self.criteria or len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"{where}.criteria: a non-empty list without repeats, got {self.criteria}")
        if not self.sparsities:
            raise ConfigError(f"{where}.sparsities: a non-empty list")
        for s in self.sparsities:
            if isinstance(s, str):
                if s != SEMI_STRUCTURED:
                    raise ConfigError(f"{where}.sparsities: {s!r} is not a number or {SEMI_STRUCTURED!r}")
            elif not 0 < s < 1:
                raise ConfigError(f"{where}.sparsities: {s} is outside (0, 1)")
        if len({str(s) for s in self.sparsities}) != len(self.sparsities):
            raise ConfigError(f"{where}.sparsities: repeated value in {self.sparsities}")
        check_split(self.calibration_split, f"{where}.calibration_split")
        if self.calibration_samples < 1:
            raise ConfigError(f"{where}.calibration_samples: must be >= 1, got {self.calibration_samples}")


def sparsity_of(point_value: str) -> float | str:
    """The sparsity a point's id text stands for (a number, or "2:4")."""
    return SEMI_STRUCTURED if point_value == SEMI_STRUCTURED_ID else float(point_value)


SPEC = ATTACKS.register(
    AttackSpec(
        name="prune",
        settings=PruneSettings,
        impl="qunlearn.attacks.prune:Prune",
        summary="unstructured magnitude or Wanda pruning at given sparsities, or 2:4 semi-structured",
        source="SAU (arXiv 2602.00577); Wanda (Sun et al. 2024)",
        strength="sparsity",
    )
)
