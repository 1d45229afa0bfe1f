"""The hooks an unlearning method implements; the loop (loop.py) calls only these and the spec's
traits, so a new method is a spec plus a subclass, never an edit of the loop.

One step of the loop, in this order::

    losses = method.losses(model, reference, forget_batch, retain_batch)  # forward passes
    method.backward(losses, params)                                       # gradients
    stats = method.transform_gradients(params)                            # e.g. SURE's masks
    clip, optimizer step; losses are averaged into the history, stats kept as of the last step

Torch-free at import (the plugin modules that subclass it are imported by dry runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..plugins import MethodSpec


class UnlearningMethod:
    """Built once per job from its spec, the job's alpha, the method's resolved settings dataclass
    and the loss variant (``faithful`` | ``paper_code``)."""

    def __init__(self, spec: MethodSpec, alpha: float, settings: Any, loss_variant: str = "faithful"):
        self.spec, self.alpha, self.settings, self.variant = spec, alpha, settings, loss_variant

    def setup(self, model, reference, tokenizer) -> None:
        """Make state of the method's own before the first step (e.g. a control vector); the
        reference is None unless the spec declares ``reference_outputs``."""

    def trainable_parameters(self, model) -> dict[str, torch.nn.Parameter]:
        """The parameters the optimizer updates (and gradients are clipped and transformed over).
        A method that trains a subset freezes the others here, so no gradient is computed for them."""
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def losses(self, model, reference, forget_batch: dict, retain_batch: dict | None) -> dict[str, torch.Tensor]:
        """``forget``, ``retain`` (when the method has a retain term and retain data was given) and
        ``loss``, the total the optimizer minimises. ``retain_batch`` is None unless the spec
        declares ``needs_retain``."""
        raise NotImplementedError

    def backward(self, losses: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter]) -> None:
        losses["loss"].backward()

    def transform_gradients(self, params: dict[str, torch.nn.Parameter]) -> dict:
        """Change the gradients before clipping and the step; returns statistics for the history."""
        return {}
