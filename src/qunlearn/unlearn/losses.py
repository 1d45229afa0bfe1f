"""Loss terms of the unlearning objectives (paper.md section 2).

``faithful``   : NLL is the token-mean cross-entropy; NPO uses sequence log-likelihoods
                 log p(x) = sum_t log p(x_t | x_<t); KL(p_ref || p_theta) is computed on
                 log-softmax distributions and averaged over real (non-pad) tokens.
``paper_code`` : the official release's formulas (baselines/baselines/iterative.py), kept on purpose
                 and named: NPO = -(2/beta) mean over all (batch, time, vocab) entries of
                 logsigmoid(beta (ref_logits - logits)), element-wise on raw logits; KL_r =
                 kl_div(logits, ref_logits, batchmean, log_target) on the 3-D raw logits (sum over
                 all entries / batch); its SURE trainer's KL_r is a proper KL, batchmean over the
                 batch (``sure_release_kl``). Padding positions are included, as in the release.
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
        # the release (IterativeUnlearner.compute_loss and SURE): element-wise on the raw logits,
        # -(2/beta) * mean over every (batch, time, vocab) entry of logsigmoid(beta * (ref - logits))
        return -(2.0 / beta) * F.logsigmoid(beta * (ref_logits.float() - logits.float())).mean()
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
        # the release's IterativeUnlearner: kl_div on the raw 3-D logits with log_target, batchmean =
        # the sum over every (batch, time, vocab) entry divided by the batch size
        return F.kl_div(logits.float(), ref_logits.float(), reduction="batchmean", log_target=True)
    raise ValueError(f"unknown loss variant {variant!r}")


def sure_release_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """The retain KL of the release's SURE trainer (its paper_code variant): a proper KL,
    kl_div(log_softmax(logits), softmax(ref_logits), batchmean) on the 3-D tensors, i.e. the sum of
    KL(p_ref || p_theta) over every position (padding included) divided by the batch size."""
    return F.kl_div(
        torch.log_softmax(logits.float(), dim=-1), torch.softmax(ref_logits.float(), dim=-1), reduction="batchmean"
    )


@torch.no_grad()
def mean_nll(model, batches: list[dict]) -> float:
    """Token-mean next-token NLL of ``model`` over collated batches (each weighed by its scored
    tokens, so the result is the mean over every scored token of the set)."""
    total, n = 0.0, 0
    for batch in batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        k = int((batch["labels"][:, 1:] != -100).sum())
        total += token_nll(logits, batch["labels"]).item() * k
        n += k
    return total / max(1, n)
