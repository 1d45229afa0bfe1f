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

A ``gradient_free`` method (spec trait) replaces the whole loop by one hook::

    rows, stats = method.edit(model, forget_batches, retain_batches, prepared)

(the collated batches of D_f, and of D_r when the spec ``needs_retain``; ``prepared`` = the
directory of the method's preparatory model when its spec names a ``preparation``, made by the
``preparation`` hook in its own cached job). The history keeps its shape: ``rows`` become its
``epochs`` (one per edit step), ``steps`` counts them.

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

    def setup_from_data(self, model, forget_batches: list[dict], retain_batches: list[dict]) -> None:
        """State that needs the data, after ``setup`` and before ``trainable_parameters``: the
        collated batches of D_f (and of D_r when the spec ``needs_retain``), in order. E.g. a
        Fisher-weighted initialisation of adapters it inserts into ``model`` in place (ihl_fila)."""

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

    def lr_schedule(self, total_steps: int):
        """The lr factor after ``n`` optimizer steps as a function ``n -> factor``, or None: a
        constant lr (every unlearning method; the loop then builds no scheduler at all)."""
        return None

    def finish(self, model) -> dict:
        """After the last step: undo what ``setup`` wrapped (e.g. merge adapters into the weights,
        so the saved model is the plain architecture); returns extra history entries."""
        return {}

    def artifacts(self) -> dict[str, tuple[dict[str, torch.Tensor], dict[str, str]]]:
        """Extra safetensors files the unlearn job writes into the model directory beside the
        weights: file name -> (tensors, metadata). E.g. an adapter and its base for a deployment
        mode (spec trait ``deployments``, qunlearn.deploy)."""
        return {}

    # ---- gradient-free methods (spec trait ``gradient_free``) ------------------------------------
    def edit(self, model, forget_batches: list[dict], retain_batches: list[dict], prepared: str | None):
        """The method's whole unlearning, in place of the optimizer loop (run under no_grad).
        Returns ``(rows, stats)``: one row per edit step with what it measured (``forget``,
        ``retain``, ``loss``: token-mean NLLs; absent keys are 0 in the history, as GA's retain
        term is), and extra history entries."""
        raise NotImplementedError(f"{self.spec.name}: a gradient_free method implements edit")

    # ---- methods with a preparatory stage (spec trait ``preparation``) ---------------------------
    def preparation(self, cfg) -> tuple[Any, UnlearningMethod]:
        """(the UnlearnConfig, the gradient-based method) the ``prepare_method`` job trains the
        target with through the loop (``cfg``: the job's resolved config, alpha unused); the model
        it saves is ``edit``'s ``prepared``."""
        raise NotImplementedError(f"{self.spec.name}: a method with a preparation implements preparation")


def scored_tokens(batch: dict) -> int:
    """Tokens a next-token loss scores: labels after the first position that are not -100."""
    return int((batch["labels"][:, 1:] != -100).sum())


def sequences(batch: dict) -> int:
    return int(batch["labels"].shape[0])
