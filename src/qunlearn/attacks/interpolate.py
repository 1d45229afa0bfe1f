"""Weight interpolation toward the released target: theta(lambda) = theta_u + lambda (theta_t -
theta_u) for a grid of lambda (``torch.lerp``: exact at both endpoints). How far along the segment
does the forgotten knowledge come back? Applied to the retrain model as the control (the target's
interpolation toward itself is the identity)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec


@dataclass
class InterpolateSettings:
    GRID = ("lambdas",)  # the settings that span the grid (id segments, not job params)
    lambdas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])

    def points(self) -> list[dict[str, str]]:
        return [{"lambda": fmt_num(x)} for x in self.lambdas]

    def validate(self, where: str) -> None:
        if not self.lambdas or len({fmt_num(x) for x in self.lambdas}) != len(self.lambdas):
            raise ConfigError(f"{where}.lambdas: a non-empty list of distinct numbers, got {self.lambdas}")


SPEC = ATTACKS.register(
    AttackSpec(
        name="interpolate",
        settings=InterpolateSettings,
        impl="qunlearn.attacks.interpolate:Interpolate",
        summary="theta_u + lambda (theta_t - theta_u), a grid of lambda",
        source="weight interpolation between the unlearned and the target model",
        strength="lambda",
        needs_target=True,
        controls=("retrain",),
    )
)
