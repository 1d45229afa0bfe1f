"""Loss terms of the unlearning objectives (paper.md section 2).

``faithful``   : NLL is the token-mean cross-entropy; NPO uses sequence log-likelihoods
                 log p(x) = sum_t log p(x_t | x_<t); KL(p_ref || p_theta) is computed on
                 log-softmax distributions and averaged over real (non-pad) tokens.
``paper_code`` : the official release's behaviour, kept on purpose and named: its NPO and KL terms
                 operate on the raw logits over the whole (batch, time, vocab) tensor, i.e. raw
                 logits are used where log-probabilities belong (padding positions included).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy of next-token prediction (labels -100 are ignored)."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(x) per sequence: sum over real tokens of log p(x_t | x_<t). Shape (batch,)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    lp = logp.gather(-1, target.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1)


def ga_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient ascent: L = -NLL(x_f)."""
    return -token_nll(logits, labels)


def npo_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float, variant: str = "faithful"
) -> torch.Tensor:
    """NPO: -(2/beta) * mean log sigmoid(-beta * (log p_theta(x) - log p_ref(x)))."""
    if variant == "faithful":
        log_ratio = sequence_logprob(logits, labels) - sequence_logprob(ref_logits, labels)
    elif variant == "paper_code":
        log_ratio = (logits.float() - ref_logits.float()).sum(dim=(1, 2))
    else:
        raise ValueError(f"unknown loss variant {variant!r}")
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def kl_retain_loss(
    logits: torch.Tensor, ref_logits: torch.Tensor, attention_mask: torch.Tensor, variant: str = "faithful"
) -> torch.Tensor:
    """KL(p_ref(.|x_r) || p_theta(.|x_r))."""
    if variant == "faithful":
        logp = torch.log_softmax(logits.float(), dim=-1)
        logq_ref = torch.log_softmax(ref_logits.float(), dim=-1)
        kl_tok = (logq_ref.exp() * (logq_ref - logp)).sum(-1)
        mask = attention_mask.float()
        return (kl_tok * mask).sum() / mask.sum().clamp_min(1.0)
    if variant == "paper_code":
        v = logits.size(-1)
        return F.kl_div(
            logits.float().reshape(-1, v), ref_logits.float().reshape(-1, v), reduction="batchmean", log_target=True
        )
    raise ValueError(f"unknown loss variant {variant!r}")
