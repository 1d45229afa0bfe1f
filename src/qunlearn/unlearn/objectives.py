"""The paper's six objectives (paper.md section 2): a GA or NPO forget term, with no retain term,
GDR (NLL on D_r) or KLR (KL to the frozen target on D_r): ``loss = forget(x_f) + alpha * retain(x_r)``.

The specs (names, settings, traits) are torch-free; the implementation classes import torch only
inside their methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec


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
