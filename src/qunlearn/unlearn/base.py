"""The hooks an unlearning method implements; the loop (loop.py) calls only these and the spec's
traits, so a new method is a spec plus a subclass, never an edit of the loop.

One step of the loop (one effective batch), in this order::

    for each micro-batch (one, unless unlearn.micro_batch_size or processes > 1 split the batch):
        terms = method.losses(model, reference, forget_mb, retain_mb)     # forward passes
        terms = method.weigh(terms, shares)                               # this micro-batch's share
        method.backward(terms, params)                                    # gradients, accumulated
    stats = method.transform_gradients(params)                            # once: e.g. SURE's masks
    clip, optimizer step; losses are averaged into the history, stats kept as of the last step

Gradient accumulation is exact when each term is a mean over items and ``term_sizes`` counts
those items: the micro-batch's term times (its items / the effective batch's items) sums to the
effective batch's mean. With one micro-batch ``weigh`` is not called (the single-batch path is
bit for bit the old one).

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

    def term_sizes(self, forget_batch: dict, retain_batch: dict | None) -> dict[str, float]:
        """The number of items each loss term of ``losses`` averages over in these batches (the
        default: scored tokens, right for a token-mean NLL). A term that is a mean over sequences
        counts sequences. Used to weigh micro-batches (see the module docstring)."""
        out = {"forget": scored_tokens(forget_batch)}
        if retain_batch is not None:
            out["retain"] = scored_tokens(retain_batch)
        return out

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The total from the terms: ``forget + alpha * retain`` (override for another objective)."""
        return terms["forget"] + self.alpha * terms["retain"] if "retain" in terms else terms["forget"]

    def weigh(self, terms: dict[str, torch.Tensor], shares: dict[str, float]) -> dict[str, torch.Tensor]:
        """Each term times its share of the effective batch (``term_sizes`` of this micro-batch
        over those of the effective batch), and the total rebuilt from them."""
        out = {k: terms[k] * shares[k] for k in shares}
        out["loss"] = self.combine(out)
        return out

    def backward(self, losses: dict[str, torch.Tensor], params: dict[str, torch.nn.Parameter]) -> None:
        """Called once per micro-batch; gradients accumulate in ``p.grad`` until the step."""
        losses["loss"].backward()

    def transform_gradients(self, params: dict[str, torch.nn.Parameter]) -> dict:
        """Change the gradients before clipping and the step; returns statistics for the history."""
        return {}


def scored_tokens(batch: dict) -> int:
    """Tokens a next-token loss scores: labels after the first position that are not -100."""
    return int((batch["labels"][:, 1:] != -100).sum())


def sequences(batch: dict) -> int:
    return int(batch["labels"].shape[0])
