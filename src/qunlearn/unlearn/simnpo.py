"""SimNPO (Fan et al. 2024, "Simplicity prevails: rethinking negative preference optimization for
LLM unlearning"): NPO without a reference model, with a length-normalised reward and a margin.

Forget term per sequence y (|y| = its number of scored tokens):
    -(2/beta) * log sigmoid(-(beta/|y|) * log p_theta(y) - gamma)
averaged over the batch; retain term as GDR (token-mean NLL on D_r), weighted by alpha. The
release's MUSE settings: beta 0.7 (NEWS), 0.75 (BOOKS), gamma 0, retain weight 0.1; TOFU: beta 2.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod, scored_tokens, sequences


@dataclass
class SimNPOSettings(MethodSettings):
    beta: float = 0.7  # the release's MUSE-News value (BOOKS 0.75, TOFU 2.5)
    gamma: float = 0.0  # reward margin

    def validate(self, where: str) -> None:
        super().validate(where)
        if not self.beta > 0:
            raise ConfigError(f"{where}.beta: must be > 0, got {self.beta}")


SPEC = METHODS.register(
    MethodSpec(
        name="simnpo",
        settings=SimNPOSettings,
        impl="qunlearn.unlearn.simnpo:SimNPO",
        summary="SimNPO: reference-free, length-normalised NPO + alpha NLL(x_r)",
        source='Fan et al. 2024, "Simplicity prevails" (arXiv 2410.07163)',
        needs_retain=True,
        family="npo",
    )
)


def simnpo_loss(logits, labels, beta: float, gamma: float):
    """-(2/beta) * mean over sequences of log sigmoid(-(beta/|y|) log p(y) - gamma)."""
    import torch.nn.functional as F

    from .losses import sequence_logprob

    n_tokens = (labels[:, 1:] != -100).sum(-1).clamp_min(1)
    reward = sequence_logprob(logits, labels) / n_tokens
    return -(2.0 / beta) * F.logsigmoid(-beta * reward - gamma).mean()


class SimNPO(UnlearningMethod):
    def term_sizes(self, forget_batch, retain_batch):
        """The forget term is a mean over sequences, the retain term a token mean."""
        return {"forget": sequences(forget_batch), "retain": scored_tokens(retain_batch)}

    def losses(self, model, reference, forget_batch, retain_batch):
        from .losses import token_nll

        def logits(batch):
            return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        out = {
            "forget": simnpo_loss(logits(forget_batch), forget_batch["labels"], self.settings.beta, self.settings.gamma)
        }
        out["retain"] = token_nll(logits(retain_batch), retain_batch["labels"])
        out["loss"] = out["forget"] + self.alpha * out["retain"]
        return out
