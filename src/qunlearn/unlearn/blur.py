"""BLUR, Bi-Level UnleaRning (Reisizadeh et al. 2025, "BLUR: A Bi-Level Optimization Approach for
LLM Unlearning"; release hadireisizadeh/BLURLLMUnlearning, MUSE ``baselines/baselines/iterative.py``,
``UnlearnerM`` with ``unlearn_method='BLO_forget_lower'``).

The forget problem is the lower level (it has priority), the retain problem the upper level. Each
step takes the gradient of the forget loss, g_f (NPO on D_f), and of the retain loss, g_r (token-mean
NLL on D_r, *unweighted*), over the trainable parameters as one vector, and steps along

    d = g_r - (<g_r, g_f> / ||g_f||^2) g_f + gamma g_f

i.e. the retain gradient with its component along g_f removed (it can no longer undo the forget
step) plus gamma times the forget gradient; the release writes this as g_r + (gamma - <g_r,
g_f>/||g_f||^2) g_f. The arm's alpha is not used (the release has no retain weight; give one alpha).

Release's MUSE settings (``unlearn_news.sh`` / ``unlearn_books.sh``): ``BLO_forget_lower_npo_gdr``,
lr 2.5e-5, gamma ("gama") 1, AdamW at a constant lr; NPO's beta is its trainer's default, 0.15.

Two backward passes per micro-batch (forget into a buffer, retain into ``p.grad``); the projection is
taken once per step on the *accumulated* gradients, so micro-batches and sharding give the batch's
step exactly (inner products are summed over shards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..plugins import METHODS, MethodSpec
from .objectives import NPOSettings, ObjectiveMethod

if TYPE_CHECKING:
    import torch


@dataclass
class BLURSettings(NPOSettings):
    beta: float = 0.15  # NPO's inverse temperature: the release trainer's default
    gamma: float = 1.0  # weight of the forget gradient in the step (the release's MUSE value)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.gamma >= 0:
            raise ConfigError(f"{where}.gamma: must be >= 0, got {self.gamma}")


SPEC = METHODS.register(
    MethodSpec(
        name="blur",
        settings=BLURSettings,
        impl="qunlearn.unlearn.blur:BLUR",
        summary="BLUR: NPO + GDR gradients combined as g_r - proj_{g_f}(g_r) + gamma g_f (bi-level, forget first)",
        source=(
            'Reisizadeh et al. 2025, "BLUR: A Bi-Level Optimization Approach for LLM Unlearning", '
            "release hadireisizadeh/BLURLLMUnlearning"
        ),
        reference_outputs=("logits",),
        needs_retain=True,
        family="npo",
    )
)


def blur_direction(g_r: list[torch.Tensor], g_f: list[torch.Tensor], gamma: float) -> tuple[list, float]:
    """The BLUR step over tensors paired by position: (directions, projection coefficient
    <g_r, g_f>/||g_f||^2). A zero forget gradient leaves g_r as it is."""
    import torch

    from ..distributed import all_reduce_sum

    dot = sum((r.double() * f.double()).sum() for r, f in zip(g_r, g_f))
    norm2 = sum((f.double() * f.double()).sum() for f in g_f)
    both = all_reduce_sum(torch.stack([torch.as_tensor(dot), torch.as_tensor(norm2)]).double())
    dot, norm2 = both.tolist()
    coef = dot / norm2 if norm2 > 0 else 0.0
    xi = gamma - coef if norm2 > 0 else 0.0
    return [r + xi * f for r, f in zip(g_r, g_f)], coef


class BLUR(ObjectiveMethod):
    forget, retain = "npo", "gdr"

    def combine(self, terms):
        """For the history only: forget + retain (the step is built from the two gradients)."""
        return terms["forget"] + terms["retain"] if "retain" in terms else terms["forget"]

    def losses(self, model, reference, forget_batch, retain_batch):
        out = super().losses(model, reference, forget_batch, retain_batch)
        out["loss"] = self.combine(out)
        return out

    def backward(self, losses, params):
        """The forget gradient into its own buffer (accumulated over micro-batches), the retain
        gradient into ``p.grad``."""
        forget = getattr(self, "_forget_grads", None) or {}
        held = {n: p.grad for n, p in params.items()}
        for n, p in params.items():
            p.grad = forget.get(n)
        losses["forget"].backward()
        self._forget_grads = {n: p.grad for n, p in params.items()}
        for n, p in params.items():
            p.grad = held[n]
        losses["retain"].backward()

    def transform_gradients(self, params):
        import torch

        from ..distributed import local

        forget, self._forget_grads = self._forget_grads, None
        names = [n for n, p in params.items() if p.grad is not None or forget.get(n) is not None]

        def grad(g, like):
            return local(g) if g is not None else local(like).new_zeros(local(like).shape)

        g_r = [grad(params[n].grad, params[n]) for n in names]
        g_f = [grad(forget.get(n), params[n]) for n in names]
        directions, coef = blur_direction(g_r, g_f, self.settings.gamma)
        for n, d in zip(names, directions):
            p = params[n]
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            local(p.grad).copy_(d)
        return {"blur_projection": coef}
