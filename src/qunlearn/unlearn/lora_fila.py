"""IHL + FILA on LoRA (Cha et al., ICLR 2025, "Towards Robust and Parameter-Efficient Knowledge
Unlearning for LLMs", openreview 1ExfUpmIW4; release: github.com/csm9493/efficient-llm-unlearning,
``TOFU/dataloader.py``, ``TOFU/forget.py``, ``TOFU/measure_importance.py``). Method ``ihl_fila``.

**Loss** (the release's ``loss_type == "IHL"``, dataloader.py ``compute_loss``). The inverted hinge
loss on every scored forget token y_t (crammer-singer margin on the softmax, ``alpha = 1``)::

    IHL = mean_t [ 1 + p(y_t | x_<t) - max_{v != y_t} p(v | x_<t) ]

(the release clamps at 0, ``_custom_multiclass_hinge_loss_update``; the value is always in [0, 2],
so the clamp never acts), plus the retain NLL (GDR): ``loss = IHL(x_f) + alpha * NLL(x_r)``. The
release adds the two with weight 1 (``loss = forget_loss + retain_loss``): alpha 1 is its setting.

**LoRA** through ``peft`` on the attention and MLP projections (the release's ``LoRA.targets: all``:
q, k, v, o, gate, up, down; lm_head and embeddings frozen), dropout 0 and ``lora_alpha = 2 * r``
(``run_forget.sh``: ``LoRA.alpha=$(( RANK * 2 ))``, ``LoRA.dropout=0``), so the scaling s = 2.
Only the adapters train. The paper swept r in {4, 8, 16, 32} on 1.3-7B models; the default r = 8:
on the tiny model (hidden 128, MLP 384) rank 8 is 1/16 of the narrowest width, already a larger
share of each layer than rank 32 of a 4096-wide 7B layer (1/128), while rank 4 would leave few
directions to move; the setting ``rank`` changes it.

**FILA** (Fisher-Initialised Low-rank Adaptation; the release's ``measure_importance.py`` and
``forget.py`` lines 242-287). Per adapted weight W (out x in):

    F_f = sum_b n_b * (dNLL(x_f^b)/dW)^2 / sum_b n_b        (n_b: scored tokens of batch b; same F_r on D_r)
    I   = F_f / (F_r + 1e-5)                                 (forget importance relative to retain)
    w_i = sqrt(sum_j I_ij)                                   (one weight per output row)
    U S V^T = rank-r SVD of diag(w) W,   S' = S / s
    A = (V sqrt(S'))^T,   B = diag(1 / (w + 1e-5)) U sqrt(S'),   W_base' = W - s B A

so B A is the rank-r weighted low-rank approximation of the forget-important part of W, and the
initial model is unchanged (W_base' + s B A = W; tests/test_lora_fila.py). The release measures the
Fisher over one epoch of (forget batch, retain batch) pairs; here: every forget batch, each paired
with the retain batch at the same position (cycled). The release's ``torch.svd_lowrank`` (randomised)
is replaced by the exact SVD (tiny weights; deterministic). ``fila: false`` gives peft's default
LoRA initialisation (B = 0).

**Deployment** (spec trait ``deployments``). The unlearn job writes the merged weights (the default
output, as every method's) and, beside them, the adapter (``adapter.safetensors``: A, B, scaling)
and the adjusted base weights W_base' (``adapter_base.safetensors``). The derived model
``derived/deploy/mode~adapter_on_quantized/of/<arm>`` (qunlearn.deploy) is the quantized W_base'
with the full-precision adapter on top: evaluated at the arm's schemes beside the merged model.
One process only (unlearn.processes: 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..deploy import ADAPTER_FILE, BASE_FILE
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod, scored_tokens

if TYPE_CHECKING:
    import torch

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class IHLFILASettings(MethodSettings):
    """LoRA rank, lora_alpha (null: 2 * rank, the release's), target projections and FILA on/off."""

    rank: int = 8
    lora_alpha: float | None = None
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    fila: bool = True

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.rank < 1:
            raise ConfigError(f"{where}.rank: must be >= 1, got {self.rank}")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise ConfigError(f"{where}.lora_alpha: must be > 0 or null, got {self.lora_alpha}")
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"{where}.targets: a non-empty list of module names without repeats")

    @property
    def scaling(self) -> float:
        return (self.lora_alpha if self.lora_alpha is not None else 2.0 * self.rank) / self.rank


SPEC = METHODS.register(
    MethodSpec(
        name="ihl_fila",
        settings=IHLFILASettings,
        impl="qunlearn.unlearn.lora_fila:IHLFILA",
        summary="inverted hinge loss on D_f + alpha NLL(D_r), LoRA adapters with Fisher-weighted (FILA) init",
        source="Cha et al. ICLR 2025 (openreview 1ExfUpmIW4), csm9493/efficient-llm-unlearning TOFU/",
        needs_retain=True,
        trains="the LoRA adapters of the attention and MLP projections",
        family="ihl",
        deployments=("adapter_on_quantized",),
    )
)


def inverted_hinge_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over scored tokens (labels != -100, after the shift) of 1 + p(y_t) - max_{v != y_t} p(v)."""
    import torch

    p = torch.softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    mask = target != -100
    p, target = p[mask], target[mask]
    p_true = p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    others = p.scatter(-1, target.unsqueeze(-1), float("-inf"))
    return (1.0 + p_true - others.amax(-1)).clamp_min(0.0).mean()


def fisher(model, batches: list[dict], names: list[str]) -> dict[str, torch.Tensor]:
    """Token-weighted mean over batches of the squared gradient of the batch's mean NLL, per weight."""
    import torch

    from .losses import token_nll

    params = {n: model.get_submodule(n).weight for n in names}
    out = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    total = 0
    for batch in batches:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token_nll(logits, batch["labels"]).backward()
        n = scored_tokens(batch)
        for k, p in params.items():
            out[k] += p.grad.float().pow(2) * n
        total += n
    model.zero_grad(set_to_none=True)
    return {k: v / max(1, total) for k, v in out.items()}


def fila_factors(w: torch.Tensor, importance: torch.Tensor, rank: int, scaling: float):
    """(A, B) of FILA for one weight (see the module docstring): s B A is the row-importance
    weighted rank-r approximation of W."""
    import torch

    w = w.float()
    row = importance.float().sum(dim=1).sqrt()
    u, s, vh = torch.linalg.svd(row[:, None] * w, full_matrices=False)
    s = s[:rank] / scaling
    a = vh[:rank] * s.sqrt()[:, None]
    b = (1.0 / (row + 1e-5))[:, None] * (u[:, :rank] * s.sqrt())
    return a, b


class IHLFILA(UnlearningMethod):
    def losses(self, model, reference, forget_batch, retain_batch):
        from .losses import token_nll

        logits = model(input_ids=forget_batch["input_ids"], attention_mask=forget_batch["attention_mask"]).logits
        out = {"forget": inverted_hinge_loss(logits, forget_batch["labels"])}
        r_logits = model(input_ids=retain_batch["input_ids"], attention_mask=retain_batch["attention_mask"]).logits
        out["retain"] = token_nll(r_logits, retain_batch["labels"])
        out["loss"] = self.combine(out)
        return out

    def setup_from_data(self, model, forget_batches, retain_batches) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from .. import distributed

        if distributed.rank_world()[1] > 1:
            raise NotImplementedError("ihl_fila runs in one process (unlearn.processes: 1)")
        s = self.settings
        wanted = set(s.targets)
        self.names = [
            n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in wanted
        ]
        if not self.names:
            raise ConfigError(f"unlearn.methods.ihl_fila.targets: no Linear module named {sorted(wanted)}")
        importance = None
        if s.fila:
            retain = [retain_batches[i % len(retain_batches)] for i in range(len(forget_batches))]
            f_f = fisher(model, forget_batches, self.names)
            f_r = fisher(model, retain, self.names)
            importance = {n: f_f[n] / (f_r[n] + 1e-5) for n in self.names}
        config = LoraConfig(
            r=s.rank,
            lora_alpha=s.lora_alpha if s.lora_alpha is not None else 2 * s.rank,
            lora_dropout=0.0,
            target_modules=self.names,
            bias="none",
        )
        self.peft = get_peft_model(model, config)  # replaces the targeted modules of ``model`` in place
        if importance is not None:
            with torch.no_grad():
                for n in self.names:
                    layer = model.get_submodule(n)
                    scaling = layer.scaling["default"]
                    w = layer.base_layer.weight
                    a, b = fila_factors(w, importance[n], s.rank, scaling)
                    layer.lora_A["default"].weight.copy_(a)
                    layer.lora_B["default"].weight.copy_(b)
                    w.copy_((w.float() - scaling * (b @ a)).to(w.dtype))

    def trainable_parameters(self, model):
        out = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not out or any("lora_" not in n for n in out):
            raise RuntimeError(f"ihl_fila: expected only LoRA parameters to train, got {sorted(out)}")
        return out

    def finish(self, model) -> dict:
        """Keep the adapter and the adjusted base, then merge the adapter into the weights (the
        model becomes the plain architecture again)."""
        adapter, base = {}, {}
        for n in self.names:
            layer = model.get_submodule(n)
            adapter[f"{n}.lora_A"] = layer.lora_A["default"].weight.detach().float().cpu().clone()
            adapter[f"{n}.lora_B"] = layer.lora_B["default"].weight.detach().float().cpu().clone()
            base[f"{n}.weight"] = layer.base_layer.weight.detach().cpu().clone()  # merging writes into it
        scaling = model.get_submodule(self.names[0]).scaling["default"]
        self._artifacts = {
            ADAPTER_FILE: (adapter, {"scaling": repr(float(scaling)), "format": "qunlearn-lora"}),
            BASE_FILE: (base, {"format": "pt"}),
        }
        self.peft.merge_and_unload()
        del self.peft
        return {"lora": {"rank": self.settings.rank, "scaling": float(scaling), "modules": len(self.names)}}

    def artifacts(self) -> dict:
        return getattr(self, "_artifacts", {})
