"""The paper's six objectives (paper.md section 2): a GA or NPO forget term, with no retain term,
GDR (NLL on D_r) or KLR (KL to the frozen target on D_r): ``loss = forget(x_f) + alpha * retain(x_r)``.

The specs (names, settings, traits) are torch-free; the implementation classes import torch only
inside their methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod, scored_tokens, sequences


@dataclass
class NPOSettings(MethodSettings):
    """NPO's inverse temperature (Zhang et al. 2024; the paper uses 0.1)."""

    beta: float = 0.1

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.beta > 0:
            raise ConfigError(f"{where}.beta: must be > 0, got {self.beta}")


# (name, forget term, retain term)
OBJECTIVES = (
    ("ga", "ga", None),
    ("ga_gdr", "ga", "gdr"),
    ("ga_klr", "ga", "klr"),
    ("npo", "npo", None),
    ("npo_gdr", "npo", "gdr"),
    ("npo_klr", "npo", "klr"),
)
FORGET_TERMS = {"ga": "gradient ascent, -NLL(x_f)", "npo": "NPO, -(2/beta) log sigmoid(-beta log(p/p_ref))"}
RETAIN_TERMS = {None: "no retain term", "gdr": "+ alpha NLL(x_r)", "klr": "+ alpha KL(p_ref || p) on x_r"}


def objective_spec(name: str, forget: str, retain: str | None, **traits) -> MethodSpec:
    """The spec of an objective (also used by its SURE variant, sure.py)."""
    needs_logits = forget == "npo" or retain == "klr"
    return MethodSpec(
        name=name,
        settings=NPOSettings if forget == "npo" else MethodSettings,
        impl=f"qunlearn.unlearn.objectives:{name.upper()}",
        summary=f"{FORGET_TERMS[forget]} {RETAIN_TERMS[retain]}",
        source="Zhang et al. ICLR 2025 (paper.md section 2); NPO: Zhang et al. 2024",
        reference_outputs=("logits",) if needs_logits else (),
        needs_retain=retain is not None,
        family=forget,
        **traits,
    )


for _name, _forget, _retain in OBJECTIVES:
    METHODS.register(objective_spec(_name, _forget, _retain))


class ObjectiveMethod(UnlearningMethod):
    """``forget(x_f) + alpha * retain(x_r)``; a subclass names its two terms."""

    forget: str = "ga"  # ga | npo
    retain: str | None = None  # None | gdr | klr

    def losses(self, model, reference, forget_batch, retain_batch):
        out = {"forget": self.forget_loss(model, reference, forget_batch)}
        out["loss"] = out["forget"]
        if retain_batch is not None:
            out["retain"] = self.retain_loss(model, reference, retain_batch)
            out["loss"] = out["forget"] + self.alpha * out["retain"]
        return out

    def term_sizes(self, forget_batch, retain_batch):
        """GA and GDR: token means; NPO: a mean over sequences; KLR: a mean over attention-mask
        positions (``paper_code``: over every padded position, so its micro-batches are not
        exactly the batch: the padded length changes with the split, as in the release)."""
        out = {"forget": scored_tokens(forget_batch) if self.forget == "ga" else sequences(forget_batch)}
        if retain_batch is not None:
            if self.retain == "gdr":
                out["retain"] = scored_tokens(retain_batch)
            elif self.variant == "faithful":
                out["retain"] = int(retain_batch["attention_mask"].sum())
            else:
                out["retain"] = int(retain_batch["attention_mask"].numel())
        return out

    def forget_loss(self, model, reference, batch):
        from .losses import ga_loss, npo_loss

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if self.forget == "ga":
            return ga_loss(logits, batch["labels"])
        ref_logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return npo_loss(logits, ref_logits.detach(), batch["labels"], self.settings.beta, self.variant)

    def retain_loss(self, model, reference, batch):
        from .losses import kl_retain_loss, token_nll

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        if self.retain == "gdr":
            return token_nll(logits, batch["labels"])
        ref_logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return kl_retain_loss(logits, ref_logits.detach(), batch["attention_mask"], self.variant)


# The implementations the specs name (GA, GA_GDR, ..., NPO_KLR).
for _name, _forget, _retain in OBJECTIVES:
    globals()[_name.upper()] = type(
        _name.upper(), (ObjectiveMethod,), {"forget": _forget, "retain": _retain, "__module__": __name__}
    )


def register_variants(
    suffix: str,
    namespace: dict,
    method_class: type,
    settings: type,
    npo_settings: type,
    summary: str,
    source: str,
    **traits,
) -> None:
    """A variant of every retain-constrained objective (``<objective>_<suffix>``: SURE, the
    quantization-aware one): its spec (the objective's, with the variant's settings and ``traits``;
    its alpha selection is the objective's) registered in METHODS, and its implementation class
    ``<OBJECTIVE>_<SUFFIX>`` (``method_class`` with the objective's terms) put into ``namespace``
    (the variant module's globals, where the spec's ``impl`` finds it). ``summary`` is formatted
    with the objective's summary as ``{objective}``."""
    module = namespace["__name__"]
    for name, forget, retain in OBJECTIVES:
        if retain is None:
            continue
        spec = objective_spec(name, forget, retain, objective=name, **traits)
        cls_name = f"{name.upper()}_{suffix.upper()}"
        METHODS.register(
            type(spec)(
                **{
                    **spec.__dict__,
                    "name": f"{name}_{suffix}",
                    "impl": f"{module}:{cls_name}",
                    "settings": npo_settings if forget == "npo" else settings,
                    "summary": summary.format(objective=spec.summary),
                    "source": source,
                }
            )
        )
        namespace[cls_name] = type(
            cls_name, (method_class,), {"forget": forget, "retain": retain, "__module__": module}
        )
