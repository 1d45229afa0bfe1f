"""LLM Surgery (Veldanda et al. 2024, "LLM Surgery: Efficient Knowledge Unlearning and Editing in
Large Language Models", arXiv 2409.13054): unlearn the outdated facts while teaching their update,
with a three-part objective on three data sets,

    loss = -NLL(x_f) + update_weight * NLL(x_u) + alpha * KL(p_ref(.|x_r) || p(.|x_r))

(1) reverse gradient (gradient ascent) on the unlearn set D_f, (2) gradient descent on the update
set D_u (the new and updated information), (3) the KL divergence to the frozen pretrained model on
a subset of the retain set D_r. The paper's abstract and method section name the three terms; its
code was not released ("we intend to make the code and dataset publicly available"), so the weights
here are settings: ``alpha`` (the arm's) weighs the retain KL, ``update_weight`` the update NLL
(1 by default: the update term as the forget term's equal). Each term is a token mean (KL: over
attention-mask positions), as GA, GDR and KLR are in objectives.py.

The update set is the split ``raw/update`` (the synthetic corpus gives each forget person a new
city and employer, data/synthetic.py); the spec declares it in ``reads_splits``, so
stages.unlearn_model reads it and the loop cycles its batches alongside D_r's. A dataset without it
(MUSE) rejects the method at config time (Experiment).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod, scored_tokens


@dataclass
class SurgerySettings(MethodSettings):
    update_weight: float = 1.0  # weight of NLL on the update set (the retain KL's weight is alpha)

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.update_weight >= 0:
            raise ConfigError(f"{where}.update_weight: must be >= 0, got {self.update_weight}")


SPEC = METHODS.register(
    MethodSpec(
        name="llm_surgery",
        settings=SurgerySettings,
        impl="qunlearn.unlearn.surgery:LLMSurgery",
        summary="LLM Surgery: -NLL(x_f) + update_weight NLL(x_u) + alpha KL(p_ref || p) on x_r (reads raw/update)",
        source='Veldanda et al. 2024, "LLM Surgery: Efficient Knowledge Unlearning and Editing", arXiv 2409.13054',
        reference_outputs=("logits",),
        needs_retain=True,
        reads_splits=("update",),
        family="ga",
    )
)


class LLMSurgery(UnlearningMethod):
    def losses(self, model, reference, forget_batch, retain_batch, extra=None):
        from .losses import ga_loss, kl_retain_loss, token_nll

        def logits(m, batch):
            return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        out = {"forget": ga_loss(logits(model, forget_batch), forget_batch["labels"])}
        update = (extra or {}).get("update")
        if update is not None:
            out["update"] = token_nll(logits(model, update), update["labels"])
        if retain_batch is not None:
            ref = logits(reference, retain_batch).detach()
            out["retain"] = kl_retain_loss(
                logits(model, retain_batch), ref, retain_batch["attention_mask"], self.variant
            )
        out["loss"] = self.combine(out)
        return out

    def combine(self, terms):
        total = terms["forget"]
        if "update" in terms:
            total = total + self.settings.update_weight * terms["update"]
        if "retain" in terms:
            total = total + self.alpha * terms["retain"]
        return total

    def term_sizes(self, forget_batch, retain_batch, extra=None):
        out = {"forget": scored_tokens(forget_batch)}
        if retain_batch is not None:
            out["retain"] = int(retain_batch["attention_mask"].sum())
        if (extra or {}).get("update") is not None:
            out["update"] = scored_tokens(extra["update"])
        return out
