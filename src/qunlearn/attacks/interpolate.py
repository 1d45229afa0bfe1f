"""Weight interpolation toward the released target: theta(lambda) = theta_u + lambda (theta_t -
theta_u) for a grid of lambda (``torch.lerp``: exact at both endpoints). How far along the segment
does the forgotten knowledge come back? Applied to the retrain model as the control (the target's
interpolation toward itself is the identity).

Every parameter and every floating buffer moves (integer buffers, if any, must already be equal).
``torch.lerp`` computes ``u + w (t - u)`` for w < 0.5 and ``t - (t - u)(1 - w)`` otherwise: equal in
value to u at w = 0 and to t at w = 1, but a signed zero can flip (lerp(-0.0, 1.0, 0) = +0.0), so
the endpoints are taken as copies: lambda 0 is the model bit for bit, lambda 1 the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec
from .base import Attack


@dataclass
class InterpolateSettings:
    GRID = ("lambdas",)  # the settings that span the grid (id segments, not job params)
    lambdas: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])

    def points(self) -> list[dict[str, str]]:
        return [{"lambda": fmt_num(x)} for x in self.lambdas]

    def validate(self, where: str) -> None:
        if not self.lambdas or len({fmt_num(x) for x in self.lambdas}) != len(self.lambdas):
            raise ConfigError(f"{where}.lambdas: a non-empty list of distinct numbers, got {self.lambdas}")


def paired_tensors(model, target) -> list[tuple[str, object, object]]:
    """(name, model tensor, target tensor) of every parameter and buffer, matched by name; a name
    only one side has, or a differing shape or dtype, is an error naming the tensor."""
    if type(model) is not type(target):
        raise ValueError(f"interpolate: model is a {type(model).__name__}, the target a {type(target).__name__}")
    ours = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    theirs = {**dict(target.named_parameters()), **dict(target.named_buffers())}
    for name in sorted(ours.keys() ^ theirs.keys()):
        side = "the target" if name in theirs else "the model"
        raise ValueError(f"interpolate: tensor {name} exists only in {side} (architectures differ)")
    pairs = []
    for name, u in ours.items():
        t = theirs[name]
        if u.shape != t.shape or u.dtype != t.dtype:
            raise ValueError(
                f"interpolate: tensor {name} is {tuple(u.shape)} {u.dtype} in the model, "
                f"{tuple(t.shape)} {t.dtype} in the target"
            )
        pairs.append((name, u, t))
    return pairs


class Interpolate(Attack):
    """theta <- lerp(theta, theta_target, lambda), in place (ctx.target: the released target)."""

    def apply(self, model, ctx) -> dict:
        import torch

        if ctx.target is None:
            raise ValueError("interpolate: no target model in the context (the spec needs_target)")
        lam = float(self.point["lambda"])
        moved = kept = 0
        with torch.no_grad():
            for name, u, t in paired_tensors(model, ctx.target):
                t = t.to(u.device)
                if not u.is_floating_point():
                    if not torch.equal(u, t):
                        raise ValueError(f"interpolate: integer tensor {name} differs between model and target")
                    kept += 1
                    continue
                if lam == 1:
                    u.copy_(t)
                elif lam != 0:
                    u.copy_(torch.lerp(u, t, lam))
                moved += 1
        return {"lambda": lam, "n_tensors_interpolated": moved, "n_integer_tensors_kept": kept}


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
