"""GA / NPO forget terms combined with no, GDR or KLR retain terms (paper.md section 2).

Each method: ``loss = forget_term(x_f) + alpha * retain_term(x_r)``.
"""

from __future__ import annotations

from . import losses
from .registry import register_method


class ObjectiveMethod:
    forget: str = "ga"  # ga | npo
    retain: str | None = None  # None | gdr | klr
    saliency: bool = False  # SURE methods restrict each step to forget-salient rows (sure.py)

    def __init__(self, alpha: float, npo_beta: float = 0.1, loss_variant: str = "faithful", **_ignored):
        self.alpha = alpha
        self.beta = npo_beta
        self.variant = loss_variant

    @property
    def needs_reference(self) -> bool:
        return self.forget == "npo" or self.retain == "klr"

    @property
    def needs_retain(self) -> bool:
        return self.retain is not None

    def forget_loss(self, model, ref_model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if self.forget == "ga":
            return losses.ga_loss(logits, batch["labels"])
        ref_logits = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return losses.npo_loss(logits, ref_logits.detach(), batch["labels"], self.beta, self.variant)

    def retain_loss(self, model, ref_model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if self.retain == "gdr":
            return losses.token_nll(logits, batch["labels"])
        ref_logits = ref_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return losses.kl_retain_loss(logits, ref_logits.detach(), batch["attention_mask"], self.variant)


# The paper's six objectives: (name, forget term, retain term).
OBJECTIVES = (
    ("ga", "ga", None),
    ("ga_gdr", "ga", "gdr"),
    ("ga_klr", "ga", "klr"),
    ("npo", "npo", None),
    ("npo_gdr", "npo", "gdr"),
    ("npo_klr", "npo", "klr"),
)

for _name, _forget, _retain in OBJECTIVES:
    register_method(_name)(type(_name.upper(), (ObjectiveMethod,), {"forget": _forget, "retain": _retain}))
