"""SURE (Zhang et al., section 6): saliency-masked unlearning.

Each step the forget-loss gradient alone decides which parameters may move: a 2-D weight's rows are
scored by the L2 norm of their gradient row, a 1-D parameter's entries by |grad|; rows scoring at
or above the ``percentile``-th percentile over the whole model are kept (``level: module`` instead
sums the row scores of each parameter tensor and thresholds tensors). All other gradients (forget
and retain alike) are zeroed before the optimizer step. Vectorised: one norm per tensor, one
quantile over all scores, no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..plugins import MethodSettings
from .objectives import NPOSettings, ObjectiveMethod, register_variants

if TYPE_CHECKING:
    import torch

SALIENCY_LEVELS = ("row", "module")


@dataclass
class SURESettings(MethodSettings):
    """SURE's mask: keep rows (``level: row``) or whole tensors (``module``) whose forget-gradient
    saliency is at or above this percentile (the paper: 90)."""

    percentile: float = 90.0
    level: str = "row"

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 0.0 <= self.percentile <= 100.0:
            raise ConfigError(f"{where}.percentile: must be in [0, 100], got {self.percentile}")
        if self.level not in SALIENCY_LEVELS:
            raise ConfigError(f"{where}.level: {self.level!r} unknown; use one of {', '.join(SALIENCY_LEVELS)}")


@dataclass
class NPOSURESettings(NPOSettings, SURESettings):
    """NPO's beta and SURE's mask."""


def row_scores(grad: torch.Tensor) -> torch.Tensor:
    """Saliency of each row (2-D+: L2 norm over all but the first dim) or entry (1-D: |grad|)."""
    if grad.dim() == 1 or grad.numel() == 0:
        return grad.abs().reshape(-1) if grad.dim() == 1 else grad.new_zeros(grad.shape[0])
    return grad.reshape(grad.shape[0], -1).norm(dim=1)


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    import torch

    # torch.quantile refuses inputs above 2^24 elements (7B models have more rows than that).
    values = values.float()
    if values.numel() <= 1 << 24:
        return torch.quantile(values, q)
    k = max(1, int(round(q * (values.numel() - 1))) + 1)
    return values.kthvalue(k).values


def saliency_masks(
    named_grads: dict[str, torch.Tensor], percentile: float = 90.0, level: str = "row"
) -> dict[str, torch.Tensor]:
    """{name: bool mask over rows (2-D) or entries (1-D)}: True = may change this step. Sharded
    gradients give masks over this process's rows, thresholded over every process's."""
    import torch

    from ..distributed import all_gather_cat, all_reduce_sum, local

    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    scores = {n: row_scores(local(g)) for n, g in named_grads.items()}
    if level == "row":
        everyone = all_gather_cat(torch.cat([s.flatten().float() for s in scores.values()]))
        threshold = _quantile(everyone, percentile / 100.0)
        return {n: s >= threshold for n, s in scores.items()}
    if level == "module":
        # a tensor's rows lie whole in one shard or another: the shards' row-score sums add up
        totals = all_reduce_sum(torch.stack([s.float().sum() for s in scores.values()]))
        threshold = _quantile(totals, percentile / 100.0)
        return {
            n: torch.full_like(s, bool(t >= threshold), dtype=torch.bool) for (n, s), t in zip(scores.items(), totals)
        }
    raise ValueError(f"unknown saliency level {level!r}; use 'row' or 'module'")


def apply_masks(params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]) -> None:
    """Zero every gradient entry outside its mask (rows of 2-D weights broadcast over columns)."""
    from ..distributed import local

    for name, p in params.items():
        if p.grad is None:
            continue
        mask = masks.get(name)
        if mask is None:
            p.grad.zero_()
            continue
        grad = local(p.grad)
        shape = (-1,) + (1,) * (grad.dim() - 1)
        grad.mul_(mask.reshape(shape).to(grad.dtype))


def kept_fraction(masks: dict[str, torch.Tensor]) -> float:
    """Share of rows (entries of 1-D parameters) a step may change."""
    import torch

    from ..distributed import all_reduce_sum

    counts = [sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())]
    kept, total = all_reduce_sum(torch.tensor(counts, dtype=torch.float64)).tolist()
    return kept / max(1.0, total)


class SUREMethod(ObjectiveMethod):
    """An objective whose updates are restricted to the forget-salient rows. The forget gradient
    alone picks the rows: per micro-batch it is backpropagated into its own buffer and the retain
    gradient into ``p.grad`` (one backward each); at the step the masks come from the accumulated
    forget gradient, the two are added and masked."""

    def retain_loss(self, model, reference, batch):
        if self.retain == "klr" and self.variant == "paper_code":
            # the release's SURE trainer uses a proper KL for its retain term, not the raw-logit one
            from .losses import sure_release_kl

            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ref = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            return sure_release_kl(logits, ref.detach())
        return super().retain_loss(model, reference, batch)

    def backward(self, losses, params):
        forget = getattr(self, "_forget_grads", None) or {}
        held = {n: p.grad for n, p in params.items()}  # the retain gradients so far
        for n, p in params.items():
            p.grad = forget.get(n)
        losses["forget"].backward()
        self._forget_grads = {n: p.grad for n, p in params.items()}
        for n, p in params.items():
            p.grad = held[n]
        if "retain" in losses:
            (self.alpha * losses["retain"]).backward()

    def masks(self, forget_grads: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        """Masks from the effective batch's accumulated forget gradients."""
        return saliency_masks(
            {n: g for n, g in forget_grads.items() if g is not None}, self.settings.percentile, self.settings.level
        )

    def transform_gradients(self, params):
        forget, self._forget_grads = self._forget_grads, None
        for n, p in params.items():
            f = forget.get(n)
            if f is not None:
                p.grad = f if p.grad is None else f + p.grad
        self._masks = self.masks(forget)
        apply_masks(params, self._masks)
        return {"kept_fraction": kept_fraction(self._masks)}


# SURE variants of the utility-constrained objectives: <objective>_sure, inheriting the objective's
# alpha selection when they set no alphas of their own.
register_variants(
    "sure",
    globals(),
    SUREMethod,
    SURESettings,
    NPOSURESettings,
    "SURE: {objective}, updates masked to the forget-salient rows",
    "Zhang et al. ICLR 2025, section 6 (SURE)",
    saliency_masked=True,
)
