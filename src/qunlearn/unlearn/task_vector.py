"""Task vector negation (Ilharco et al. 2023, "Editing models with task arithmetic"), as the MUSE
benchmark runs it (Shi et al. 2024; release github.com/swj0419/muse_bench, ``baselines/unlearn.py``
with ``--algo tv``, ``baselines/baselines/task_vector.py`` and ``finetune.py``).

Two stages:

1. *Preparation* (its own cached job, rule ``prepare_method``): fine-tune the target theta_t on the
   forget set D_f to theta_ft: next-token NLL, AdamW, a cosine schedule from ``finetune_lr`` to 0
   without warmup, ``finetune_epochs`` epochs, gradient norm clipped at ``finetune_max_grad_norm``
   (what MUSE's ``finetune()`` gets from ``transformers.Trainer``: ``lr_scheduler_type='cosine'``
   and the Trainer's defaults), the unlearn section's batch size and data format. One job per
   dataset and seed, whatever the alphas.
2. *Unlearning* (gradient-free, each alpha): theta_u = theta_t - alpha * (theta_ft - theta_t) on
   every floating tensor of the state dict, computed in float64 and rounded once to the stored
   dtype (MUSE computes in bf16); alpha 0 returns theta_t bit for bit.

MUSE's settings (NEWS and BOOKS alike): ``FT_EPOCHS=10``, ``FT_LR=1e-5``, alpha 5.0, batch 4 per
GPU x 8 GPUs = 32, max length 2048.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ConfigError
from ..plugins import METHODS, MethodSettings, MethodSpec
from .base import UnlearningMethod

SCHEDULERS = ("cosine", "constant")


@dataclass
class TaskVectorSettings(MethodSettings):
    finetune_epochs: int = 10  # MUSE's FT_EPOCHS (NEWS and BOOKS)
    finetune_lr: float = 1.0e-5  # MUSE's FT_LR
    finetune_scheduler: str = "cosine"  # MUSE: Trainer(lr_scheduler_type='cosine'), no warmup
    finetune_max_grad_norm: float | None = 1.0  # transformers.Trainer's default (MUSE sets none)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.finetune_epochs < 1:
            raise ConfigError(f"{where}.finetune_epochs: must be >= 1, got {self.finetune_epochs}")
        if not self.finetune_lr > 0:
            raise ConfigError(f"{where}.finetune_lr: must be > 0, got {self.finetune_lr}")
        if self.finetune_scheduler not in SCHEDULERS:
            raise ConfigError(
                f"{where}.finetune_scheduler: {self.finetune_scheduler!r}; use one of {', '.join(SCHEDULERS)}"
            )
        if self.finetune_max_grad_norm is not None and not self.finetune_max_grad_norm > 0:
            raise ConfigError(f"{where}.finetune_max_grad_norm: must be > 0 or null")


SPEC = METHODS.register(
    MethodSpec(
        name="task_vector",
        settings=TaskVectorSettings,
        impl="qunlearn.unlearn.task_vector:TaskVector",
        summary="task vector negation: theta_t - alpha (theta_ft - theta_t), theta_ft fine-tuned on D_f",
        source='Ilharco et al. 2023, "Editing models with task arithmetic"; as in MUSE (swj0419/muse_bench)',
        trains="no training at unlearning (weight arithmetic); the preparation fine-tunes all parameters",
        family="task_vector",
        gradient_free=True,
        preparation="finetune_forget",
    )
)


def negate_task_vector(target: dict, finetuned: dict, alpha: float) -> dict:
    """theta_t - alpha * (theta_ft - theta_t) per floating tensor (float64, rounded once to the
    target's dtype); other tensors are the target's. The two state dicts must have the same keys
    and shapes."""
    import torch

    if target.keys() != finetuned.keys():
        raise ValueError(
            f"task_vector: the fine-tuned model's tensors differ: {sorted(target.keys() ^ finetuned.keys())}"
        )
    out = {}
    for key, t in target.items():
        ft = finetuned[key]
        if ft.shape != t.shape:
            raise ValueError(
                f"task_vector: {key}: shape {tuple(ft.shape)} in the fine-tuned model, {tuple(t.shape)} here"
            )
        if not t.is_floating_point():
            out[key] = t
            continue
        t64 = t.detach().to("cpu", torch.float64)
        out[key] = (t64 - alpha * (ft.detach().to("cpu", torch.float64) - t64)).to(t.dtype)
    return out


class TaskVector(UnlearningMethod):
    def preparation(self, cfg):
        s = self.settings
        train_cfg = dataclasses.replace(
            cfg, lr=s.finetune_lr, epochs=s.finetune_epochs, max_grad_norm=s.finetune_max_grad_norm
        )
        spec = dataclasses.replace(self.spec, gradient_free=False, preparation="", needs_retain=False)
        return train_cfg, FinetuneForget(spec=spec, alpha=0.0, settings=s, loss_variant=cfg.loss_variant)

    def edit(self, model, forget_batches, retain_batches, prepared):
        import torch

        from ..models import load_model
        from .losses import mean_nll

        finetuned = load_model(prepared, device=torch.device("cpu")).state_dict()
        target = model.state_dict()
        new = negate_task_vector(target, finetuned, self.alpha)
        norm = sum(float(((finetuned[k].double() - target[k].double().cpu()) ** 2).sum()) for k in _floating(target))
        model.load_state_dict(new, strict=True)
        rows = [{"forget": mean_nll(model, forget_batches)}]
        return rows, {"task_vector_norm": norm**0.5, "prepared": str(prepared)}


def _floating(state: dict) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point()]


class FinetuneForget(UnlearningMethod):
    """The preparation's trainer: token-mean NLL on D_f (gradient descent), with MUSE's schedule."""

    def losses(self, model, reference, forget_batch, retain_batch):
        from .losses import token_nll

        logits = model(input_ids=forget_batch["input_ids"], attention_mask=forget_batch["attention_mask"]).logits
        nll = token_nll(logits, forget_batch["labels"])
        return {"forget": nll, "loss": nll}

    def lr_schedule(self, total_steps: int):
        if self.settings.finetune_scheduler == "constant":
            return None
        import math

        # transformers.get_cosine_schedule_with_warmup with 0 warmup steps (half a cosine to 0)
        return lambda step: max(0.0, 0.5 * (1.0 + math.cos(math.pi * step / max(1, total_steps))))
