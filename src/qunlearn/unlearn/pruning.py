"""Selective pruning (Pochinkov & Schoots 2024, "Dissecting language models: machine unlearning via
selective pruning", arXiv 2403.01267; release: github.com/nickypro/taker, ``prune.py``,
``scoring.py``): no gradients; zero the neurons that are far more active on the forget text than
on the retain text.

Neurons: the MLP's intermediate units (the inputs of ``down_proj``) and the attention's pre-output
neurons (the inputs of ``o_proj``: each head's value mix, one neuron per head and head dimension).
Score of neuron i (the release's ``abs`` scoring)::

    S_i = mean |a_i| over the tokens of D_f  /  (mean |a_i| over the tokens of D_r + eps)

Each of ``steps`` steps re-scores the current model and zeroes the highest-scoring neurons not yet
pruned, ranked over all layers, MLP and attention neurons separately (their activations have
different scales), until ``mlp_fraction`` / ``attn_fraction`` of each kind are pruned (step j
prunes ``K (j+1) // steps - K j // steps`` of the K = int(fraction * count) of its kind).

Zeroing a neuron = zeroing its column of ``down_proj`` / ``o_proj`` (the weight that reads it): the
neuron's whole write to the residual stream, exact whatever the activation function, and one
column per neuron also under grouped-query attention (zeroing a ``v_proj`` row instead would remove
that dimension from every query head sharing the key-value head). The neuron's own activation is
unchanged, so pruned neurons are excluded from later steps explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod


@dataclass
class SelectivePruningSettings(MethodSettings):
    mlp_fraction: float = 0.03  # of all MLP neurons (every layer), pruned in total
    attn_fraction: float = 0.03  # of all attention pre-output neurons, pruned in total
    steps: int = 3  # re-scoring steps; each prunes an equal share of the total
    eps: float = 1e-5  # the score's denominator offset
    # tokens of each of D_f and D_r scored per step (whole batches, in order, until reached; the
    # release collects 1e5 tokens per dataset); null = every example
    sample_tokens: int | None = 100_000

    def validate(self, where: str) -> None:
        super().validate(where)
        for key in ("mlp_fraction", "attn_fraction"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"{where}.{key}: must be in [0, 1], got {getattr(self, key)}")
        if self.mlp_fraction == 0 and self.attn_fraction == 0:
            raise ConfigError(f"{where}: mlp_fraction and attn_fraction are both 0 (nothing to prune)")
        if self.steps < 1:
            raise ConfigError(f"{where}.steps: must be >= 1, got {self.steps}")
        if not self.eps > 0:
            raise ConfigError(f"{where}.eps: must be > 0, got {self.eps}")
        if self.sample_tokens is not None and self.sample_tokens < 1:
            raise ConfigError(f"{where}.sample_tokens: must be >= 1 or null, got {self.sample_tokens}")
        if self.alphas is not None and len(self.alphas) > 1:
            raise ConfigError(f"{where}.alphas: selective pruning has no alpha (it is unused); give one value")


SPEC = METHODS.register(
    MethodSpec(
        name="selective_pruning",
        settings=SelectivePruningSettings,
        impl="qunlearn.unlearn.pruning:SelectivePruning",
        summary="selective pruning: zero the MLP and attention neurons most active on D_f relative to D_r",
        source='Pochinkov & Schoots 2024, "Dissecting language models" (arXiv 2403.01267); nickypro/taker',
        needs_retain=True,
        trains="no training: columns of down_proj and o_proj are zeroed",
        family="pruning",
        gradient_free=True,
    )
)

# the modules whose inputs are the scored neurons, by the suffix of their names (Llama, Mistral, Qwen)
SITES = {"mlp": "mlp.down_proj", "attn": "self_attn.o_proj"}


def neuron_sites(model) -> dict[str, list]:
    """kind -> the Linear modules reading each layer's neurons of that kind, in layer order."""
    out = {kind: [m for n, m in model.named_modules() if n.endswith(suffix)] for kind, suffix in SITES.items()}
    if not all(out.values()):
        raise ValueError(f"selective_pruning: no {' / '.join(SITES.values())} modules in {type(model).__name__}")
    return out


def mean_abs_activations(model, sites: dict[str, list], batches: list[dict], sample_tokens: int | None):
    """(kind -> (layers, neurons) mean |activation| over the real tokens of ``batches``, in float64;
    the token-mean NLL on them). Whole batches in order until ``sample_tokens`` tokens are read."""
    import torch

    from .losses import token_nll

    sums = {kind: [None] * len(mods) for kind, mods in sites.items()}
    state = {"mask": None}

    def hook(kind, layer):
        def pre(module, args):
            x = args[0].detach().to(torch.float64).abs() * state["mask"]
            total = x.sum(dim=(0, 1))
            sums[kind][layer] = total if sums[kind][layer] is None else sums[kind][layer] + total

        return pre

    handles = [m.register_forward_pre_hook(hook(k, i)) for k, mods in sites.items() for i, m in enumerate(mods)]
    tokens, nll, scored = 0, 0.0, 0
    try:
        for batch in batches:
            if sample_tokens is not None and tokens >= sample_tokens:
                break
            state["mask"] = batch["attention_mask"].to(torch.float64).unsqueeze(-1)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            k = int((batch["labels"][:, 1:] != -100).sum())
            nll += token_nll(logits, batch["labels"]).item() * k
            scored += k
            tokens += int(batch["attention_mask"].sum())
    finally:
        for h in handles:
            h.remove()
    if tokens == 0:
        raise ValueError("selective_pruning: no tokens to score")
    means = {kind: torch.stack(layers) / tokens for kind, layers in sums.items()}
    return means, nll / max(1, scored)


def scores(forget_mean, retain_mean, eps: float):
    """S = mean|a| on D_f / (mean|a| on D_r + eps)."""
    return forget_mean / (retain_mean + eps)


def top_unpruned(score, pruned, k: int):
    """Boolean mask (score's shape) of the ``k`` highest scores among the neurons not yet pruned;
    ties go to the lower flat index (a stable sort)."""
    import torch

    flat = score.flatten().masked_fill(pruned.flatten(), float("-inf"))
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    return chosen.reshape(score.shape)


def share(total: int, steps: int, step: int) -> int:
    """Neurons pruned at ``step`` (0-based) so that ``steps`` steps prune ``total`` in all."""
    return total * (step + 1) // steps - total * step // steps


class SelectivePruning(UnlearningMethod):
    def edit(self, model, forget_batches, retain_batches, prepared=None):
        import torch

        s = self.settings
        sites = neuron_sites(model)
        fractions = {"mlp": s.mlp_fraction, "attn": s.attn_fraction}
        width = {k: mods[0].weight.shape[1] for k, mods in sites.items()}
        pruned = {k: torch.zeros(len(mods), width[k], dtype=torch.bool) for k, mods in sites.items()}
        totals = {k: int(fractions[k] * pruned[k].numel()) for k in sites}
        rows = []
        with torch.no_grad():
            for step in range(s.steps):
                rows.append(self._step(model, sites, forget_batches, retain_batches, pruned, totals, step))
        stats = {
            "pruned": {
                k: {"neurons": int(p.sum()), "of": p.numel(), "per_layer": p.sum(1).tolist()} for k, p in pruned.items()
            },
            "pruned_indices": {
                k: [p[i].nonzero().flatten().tolist() for i in range(len(p))] for k, p in pruned.items()
            },
        }
        return rows, stats

    def _step(self, model, sites, forget_batches, retain_batches, pruned, totals, step) -> dict:
        """Score the current model, zero this step's share of each kind; the row of the history
        (the NLLs measured while scoring, i.e. before this step's zeroing, and the pruned counts)."""
        s = self.settings
        f_mean, f_nll = mean_abs_activations(model, sites, forget_batches, s.sample_tokens)
        r_mean, r_nll = mean_abs_activations(model, sites, retain_batches, s.sample_tokens)
        row = {"forget": f_nll, "retain": r_nll}
        for kind, mods in sites.items():
            score = scores(f_mean[kind], r_mean[kind], s.eps)
            new = top_unpruned(score, pruned[kind], share(totals[kind], s.steps, step))
            for layer, module in enumerate(mods):
                module.weight[:, new[layer].nonzero().flatten().to(module.weight.device)] = 0
            pruned[kind] |= new
            row[f"pruned_{kind}"] = int(pruned[kind].sum())
        return row
