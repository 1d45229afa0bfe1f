"""Pruning attacks (SAU, arXiv 2602.00577: sparsifying an unlearned model brings answers back).

Per Linear layer of the transformer blocks (attention and MLP projections; not embeddings, norms
or lm_head):
- ``magnitude``: zero the ``sparsity`` share of each weight matrix with the smallest |W|;
- ``wanda`` (Sun et al. 2024): score |W_ij| * ||X_j||_2 (the input activation's norm over
  calibration tokens), zero the smallest ``sparsity`` share of each output row;
- a sparsity of ``"2of4"`` (the 2:4 pattern): in every group of 4 consecutive inputs of a row, zero the 2 with the
  lowest score (NVIDIA's semi-structured pattern), by the criterion's score.
Calibration text (Wanda) comes from a non-forget split.

The number pruned: ``k = round(sparsity * n)`` (nearest, ties to even) of the n weights of a matrix
(magnitude) or of a row (wanda; Wanda's code truncates, ``int(sparsity * n)``: the same for the
grid's sparsities on even widths). Ties in the score are broken by position (a stable sort of the
flattened matrix or of the row): the lower index is pruned first, so the choice is deterministic.

Wanda's activation norms are taken block by block as in its reference code (``prune_wanda``, which
runs each block on the outputs of the already pruned ones): block i's are measured by a forward
pass over the calibration records with blocks 0..i-1 already pruned, all of block i's Linear layers
at once (so within a block the inputs are those of the unpruned block). Each calibration record is
one sequence of its first ``calibration_max_length`` tokens (BOS first), run alone: no padding to
mask. The records: ``calibration_samples`` of the split by a shuffle seeded with
``calibration_seed`` (``muse_format.seeded_subset``, the GPTQ/AWQ calibration's draw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..data import muse_format
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec
from .base import Attack, check_split, read_raw_texts

CRITERIA = ("magnitude", "wanda")
# the 2:4 pattern, in the config and in model ids: not "2:4", which a YAML 1.1 reader (PyYAML; and
# DVC rewrites config.yaml unquoted) takes for the base-60 number 124
SEMI_STRUCTURED = "2of4"


@dataclass
class PruneSettings:
    GRID = ("criteria", "sparsities")  # the settings that span the grid (id segments, not job params)
    criteria: list[str] = field(default_factory=lambda: ["magnitude"])
    sparsities: list[float | str] = field(default_factory=lambda: [0.5])  # numbers in (0, 1) or "2of4"
    calibration_split: str = "retain2"  # wanda only
    calibration_samples: int = 32
    calibration_seed: int = 0
    calibration_max_length: int = 256

    def points(self) -> list[dict[str, str]]:
        return [
            {"criterion": c, "sparsity": s if s == SEMI_STRUCTURED else fmt_num(s)}
            for c in self.criteria
            for s in self.sparsities
        ]

    def validate(self, where: str) -> None:
        for c in self.criteria:
            if c not in CRITERIA:
                raise ConfigError(f"{where}.criteria: unknown criterion {c!r}; one of {', '.join(CRITERIA)}")
        if not self.criteria or len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"{where}.criteria: a non-empty list without repeats, got {self.criteria}")
        if not self.sparsities:
            raise ConfigError(f"{where}.sparsities: a non-empty list")
        for s in self.sparsities:
            if isinstance(s, str):
                if s != SEMI_STRUCTURED:
                    raise ConfigError(f"{where}.sparsities: {s!r} is not a number or {SEMI_STRUCTURED!r}")
            elif not 0 < s < 1:
                raise ConfigError(
                    f"{where}.sparsities: {s} is outside (0, 1) (the 2:4 pattern is written {SEMI_STRUCTURED!r})"
                )
        if len({str(s) for s in self.sparsities}) != len(self.sparsities):
            raise ConfigError(f"{where}.sparsities: repeated value in {self.sparsities}")
        check_split(self.calibration_split, f"{where}.calibration_split")
        if self.calibration_samples < 1:
            raise ConfigError(f"{where}.calibration_samples: must be >= 1, got {self.calibration_samples}")


def sparsity_of(point_value: str) -> float | str:
    """The sparsity a point's id text stands for (a number, or "2of4")."""
    return SEMI_STRUCTURED if point_value == SEMI_STRUCTURED else float(point_value)


class _StopForward(Exception):
    """Raised by a hook after the block being measured: the rest of the forward pass is not needed."""


def blocks_of(model) -> list:
    """The transformer blocks, in order (Llama: ``model.model.layers``)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError(f"prune: {type(model).__name__} has no model.layers (transformer blocks) to prune")
    return list(layers)


def prune_count(sparsity: float, n: int) -> int:
    return round(sparsity * n)


def unstructured_mask(score, sparsity: float, per_row: bool):
    """Bool mask of the weights to zero: the ``k`` lowest scores of the matrix (``per_row`` False)
    or of each row; ties go to the lower flattened index."""
    import torch

    rows = score if per_row else score.reshape(1, -1)
    k = prune_count(sparsity, rows.shape[1])
    order = torch.sort(rows, dim=1, stable=True).indices[:, :k]
    mask = torch.zeros_like(rows, dtype=torch.bool).scatter_(1, order, True)
    return mask.reshape(score.shape)


def semi_structured_mask(score, name: str):
    """Bool mask zeroing, in every group of 4 consecutive inputs of a row, the 2 lowest scores."""
    import torch

    out_f, in_f = score.shape
    if in_f % 4:
        raise ValueError(f"prune 2:4: input width {in_f} of layer {name} is not a multiple of 4")
    groups = score.reshape(out_f, in_f // 4, 4)
    order = torch.sort(groups, dim=2, stable=True).indices[:, :, :2]
    return torch.zeros_like(groups, dtype=torch.bool).scatter_(2, order, True).reshape(score.shape)


class Prune(Attack):
    """Zero a share of each block Linear weight by |W| (magnitude) or |W| * ||X_j|| (wanda)."""

    def apply(self, model, ctx) -> dict:
        import torch

        from ..quantize import target_linears

        criterion = self.point["criterion"]
        sparsity = sparsity_of(self.point["sparsity"])
        blocks = blocks_of(model)
        block_index = {id(m): i for i, block in enumerate(blocks) for m in block.modules()}
        # the blocks' Linear layers (target_linears: every Linear but lm_head; embeddings and norms
        # are not Linear), each with the index of its block
        linears = {n: m for n, m in target_linears(model, include_lm_head=False).items() if id(m) in block_index}
        records = self._calibration_ids(ctx) if criterion == "wanda" else None
        pruned = {}
        with torch.no_grad():
            for i, block in enumerate(blocks):
                names = [n for n, m in linears.items() if block_index[id(m)] == i]
                norms = self._input_norms(model, block, {n: linears[n] for n in names}, records) if records else {}
                for name in names:
                    w = linears[name].weight
                    score = w.detach().abs().float()
                    if criterion == "wanda":
                        score = score * norms[name].to(score.device).unsqueeze(0)
                    if sparsity == SEMI_STRUCTURED:
                        mask = semi_structured_mask(score, name)
                    else:
                        mask = unstructured_mask(score, sparsity, per_row=criterion == "wanda")
                    w.masked_fill_(mask, 0)
                    pruned[name] = int(mask.sum())
        return self._stats(linears, pruned, criterion, sparsity)

    def _calibration_ids(self, ctx) -> list:
        """Token ids of the calibration records (each cut at calibration_max_length tokens)."""
        import torch

        s = self.settings
        texts = read_raw_texts(
            ctx,
            s.calibration_split,
            "wanda calibration",
            lambda n: muse_format.seeded_subset(n, s.calibration_samples, s.calibration_seed),
        )
        limit = min(s.calibration_max_length, ctx.max_length)
        return [
            torch.tensor([ctx.tokenizer(t, add_special_tokens=True)["input_ids"][:limit]], dtype=torch.long)
            for t in texts
        ]

    @staticmethod
    def _input_norms(model, block, linears: dict, records: list) -> dict:
        """||X_j||_2 over every calibration token, per input column of each of ``linears`` (one block),
        measured with the blocks before it as they are now (already pruned)."""
        import torch

        sums = {name: torch.zeros(m.in_features, dtype=torch.float64) for name, m in linears.items()}

        def record(name):
            def hook(module, inputs):
                x = inputs[0].detach().to(torch.float64)
                sums[name] += x.pow(2).reshape(-1, x.shape[-1]).sum(dim=0).cpu()

            return hook

        def stop(module, inputs, output):
            raise _StopForward

        handles = [m.register_forward_pre_hook(record(name)) for name, m in linears.items()]
        handles.append(block.register_forward_hook(stop))
        device = next(model.parameters()).device
        try:
            for ids in records:
                try:
                    model(input_ids=ids.to(device), use_cache=False)
                except _StopForward:
                    pass
        finally:
            for h in handles:
                h.remove()
        return {name: s.sqrt().float() for name, s in sums.items()}

    @staticmethod
    def _stats(linears: dict, pruned: dict, criterion: str, sparsity) -> dict:
        """Achieved sparsity (share of exact zeros after pruning) per module type (q_proj, ...) and
        overall, and the number pruned per layer."""
        zeros, sizes = {}, {}
        for name, m in linears.items():
            kind = name.split(".")[-1]
            zeros[kind] = zeros.get(kind, 0) + int((m.weight == 0).sum())
            sizes[kind] = sizes.get(kind, 0) + m.weight.numel()
        return {
            "criterion": criterion,
            "sparsity": sparsity,
            "achieved_sparsity": round(sum(zeros.values()) / sum(sizes.values()), 6),
            "achieved_sparsity_by_type": {k: round(zeros[k] / sizes[k], 6) for k in zeros},
            "pruned_per_layer": pruned,
            "n_layers": len(linears),
        }


SPEC = ATTACKS.register(
    AttackSpec(
        name="prune",
        settings=PruneSettings,
        impl="qunlearn.attacks.prune:Prune",
        summary="unstructured magnitude or Wanda pruning at given sparsities, or 2:4 semi-structured",
        source="SAU (arXiv 2602.00577); Wanda (Sun et al. 2024)",
        strength="sparsity",
    )
)
