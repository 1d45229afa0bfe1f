"""Fine-tuning attacks: relearning on the forget set, held-out relearning (RTT), benign fine-tuning.

- ``relearn``: fine-tune on a seeded fraction of the forget set's raw text for a grid of step
  counts. Defaults: the MUSE relearning recipe of OPTML-Group/Unlearn-Smooth (commit fc655ba)
  (``MUSE/baselines/run_muse_relearn.sh`` and ``relearn()`` in ``MUSE/baselines/baselines/finetune.py``:
  a transformers Trainer with ``optim=adamw_torch``, lr 1e-5, ``lr_scheduler_type=cosine``,
  per-device batch 4, ``max_steps`` NEWS {100, 125, 150}, BOOKS {50, 75, 100}, and the Trainer's
  defaults: weight decay 0, no warmup, gradient clipping at norm 1). It relearns on the whole
  forget set (``raw/forget.txt``), hence ``fraction`` 1. Its data is MUSE's packed form (every
  document joined, chunks of BOS + max_len - 1 tokens, max_len 2048): ``data_format: packed``;
  the default here, ``documents``, is the unlearning default's form. It trains in bf16; here the
  model's own dtype.
- ``heldout_relearn`` (retraining on T, Deeb & Roger 2024): the forget entities are split into
  two disjoint halves by ``halves_seed`` (``data.entities.heldout_halves``); the model is relearned on the
  records of half A only and scored (KnowMem, VerbMem) on the items of half B only.
- ``benign_finetune``: fine-tune on retain text only (no forget data; arXiv 2505.22310).

Every fine-tuning attack also runs on the retrain model with the same data and budget (trait
``finetunes``): the tables report recovery above that control (Feng et al. 2025).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import DATA_FORMATS, ConfigError
from ..data import muse_format
from ..plugins import ATTACKS, AttackSpec
from .base import Attack, check_split, read_raw_texts, record_read


@dataclass
class FinetuneSettings:
    GRID = ("steps",)  # the settings that span the grid (id segments, not job params)
    steps: list[int] = field(default_factory=lambda: [100, 125, 150])  # the grid (MUSE NEWS)
    lr: float = 1.0e-5
    batch_size: int = 4
    scheduler: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0: no clipping
    data_format: str = "documents"  # documents | packed (batching.py; the source packs)

    def points(self) -> list[dict[str, str]]:
        return [{"steps": str(s)} for s in self.steps]

    def validate(self, where: str) -> None:
        if not self.steps or any(s < 1 for s in self.steps) or len(set(self.steps)) != len(self.steps):
            raise ConfigError(f"{where}.steps: a non-empty list of distinct integers >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be >= 1, got {self.batch_size}")
        if self.scheduler not in ("cosine", "constant"):
            raise ConfigError(f"{where}.scheduler: 'cosine' or 'constant', got {self.scheduler!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"{where}.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.max_grad_norm < 0:
            raise ConfigError(f"{where}.max_grad_norm: must be >= 0 (0: no clipping), got {self.max_grad_norm}")
        if self.data_format not in DATA_FORMATS:
            raise ConfigError(
                f"{where}.data_format: {self.data_format!r} unknown; use one of {', '.join(DATA_FORMATS)}"
            )


@dataclass
class RelearnSettings(FinetuneSettings):
    # the seeded share of the forget set's records relearned on (at least one record: checked
    # against the dataset's size at config time where it is known)
    fraction: float = 1.0  # the source relearns on the whole forget set
    split: str = "forget"

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"{where}.fraction: must be in (0, 1], got {self.fraction}")
        check_split(self.split, f"{where}.split", allow_forget=True)


@dataclass
class HeldoutRelearnSettings(FinetuneSettings):
    # the seed of the split of the forget people into halves A and B: a setting rather than the
    # job's seed, so that every arm, its retrain control and the scoring on B share the halves
    halves_seed: int = 0


@dataclass
class BenignSettings(FinetuneSettings):
    split: str = "retain1"  # the unlearning retain set D_r; retain2 is the other retain-side split

    def validate(self, where: str) -> None:
        super().validate(where)
        check_split(self.split, f"{where}.split")


def lr_factor(scheduler: str, warmup_steps: int, steps: int):
    """The lr multiplier of step 0, 1, ...: a linear warmup over ``warmup_steps`` (train.py's), then
    cosine to 0 at ``steps`` (the Trainer's ``cosine`` without warmup) or constant."""
    from ..train import lr_lambda

    if scheduler == "cosine":
        return lr_lambda(warmup_steps, steps)
    warm = lr_lambda(warmup_steps, warmup_steps)  # its cosine part is never reached below
    return lambda step: warm(step) if step < warmup_steps else 1.0


def finetune(model, tokenizer, texts: list[str], settings: FinetuneSettings, steps: int, seed: int, max_length: int):
    """Fine-tune ``model`` in place for exactly ``steps`` AdamW steps on the next-token loss of
    ``texts`` (cut into examples as ``settings.data_format`` says, at most ``max_length`` tokens):
    batches of ``batch_size`` from seeded shuffles of the examples, reshuffled at each pass (the
    unlearning loop's ``Cycle``, generator seeded with ``seed``), gradients clipped at
    ``max_grad_norm``. Returns the per-step losses and the data's size."""
    import torch

    from ..batching import collate, encode, to_device
    from ..unlearn.loop import Cycle

    device = next(model.parameters()).device
    examples = encode(tokenizer, texts, max_length, settings.data_format)
    batches = Cycle(len(examples), settings.batch_size, torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(settings.scheduler, settings.warmup_steps, steps))
    losses = []
    model.train()
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model(**to_device(collate([examples[i] for i in batches.next()], tokenizer.pad_token_id), device)).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged at step {step + 1}: loss {loss.item()}")
        loss.backward()
        if settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return {
        "steps": steps,
        "n_texts": len(texts),
        "n_examples": len(examples),
        "passes": round(steps * settings.batch_size / len(examples), 4),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": [round(x, 6) for x in losses],
    }


class _Finetune(Attack):
    """One fine-tuning point: ``self.texts(ctx)`` (recorded in ctx.reads) for ``point["steps"]`` steps."""

    purpose = ""

    def texts(self, ctx) -> list[str]:
        raise NotImplementedError

    def apply(self, model, ctx) -> dict:
        texts = self.texts(ctx)
        return finetune(model, ctx.tokenizer, texts, self.settings, int(self.point["steps"]), ctx.seed, ctx.max_length)


class Relearn(_Finetune):
    """Relearn on ``fraction`` of the records of ``split`` (the forget set), drawn with the job's seed."""

    def texts(self, ctx) -> list[str]:
        s = self.settings
        # the subset in file order; at least one record
        return read_raw_texts(
            ctx,
            s.split,
            "relearning",
            lambda n: sorted(muse_format.seeded_subset(n, max(1, round(s.fraction * n)), ctx.seed)),
        )


class HeldoutRelearn(_Finetune):
    """Relearn on the forget records about half A of the forget people only (a record that also
    names someone of half B is left out); half B is what the evaluation scores."""

    def halves(self, ctx) -> tuple[list[str], list[str]]:
        from ..data.entities import forget_entities, heldout_halves

        return heldout_halves(forget_entities(ctx.data_dir), self.settings.halves_seed)

    def texts(self, ctx) -> list[str]:
        from ..data.entities import records_within

        a, b = self.halves(ctx)
        texts = records_within(ctx.data_dir, "forget", set(a))
        if not texts:
            raise ValueError(f"heldout_relearn: no forget record is about half A ({', '.join(a)}) alone")
        record_read(ctx, "forget", "held-out relearning", texts, "records whose entities all lie in half A", A=a, B=b)
        return texts

    def apply(self, model, ctx) -> dict:
        stats = super().apply(model, ctx)
        a, b = self.halves(ctx)
        return {**stats, "halves_seed": self.settings.halves_seed, "A": a, "B": b}


class BenignFinetune(_Finetune):
    """Fine-tune on every record of ``split`` (retain-side text: no forget data)."""

    def texts(self, ctx) -> list[str]:
        return read_raw_texts(ctx, self.settings.split, "benign fine-tuning")


RELEARN = ATTACKS.register(
    AttackSpec(
        name="relearn",
        settings=RelearnSettings,
        impl="qunlearn.attacks.finetune:Relearn",
        summary="fine-tune on a seeded fraction of the forget set (grid of step counts)",
        source="MUSE relearning recipe, OPTML-Group/Unlearn-Smooth; Deeb & Roger 2024",
        strength="steps",
        finetunes=True,
    )
)
HELDOUT_RELEARN = ATTACKS.register(
    AttackSpec(
        name="heldout_relearn",
        settings=HeldoutRelearnSettings,
        impl="qunlearn.attacks.finetune:HeldoutRelearn",
        summary="relearn on half A of the forget entities, score on half B only (RTT)",
        source="Deeb & Roger 2024, retraining on T",
        strength="steps",
        finetunes=True,
        needs_entities=True,
    )
)
BENIGN_FINETUNE = ATTACKS.register(
    AttackSpec(
        name="benign_finetune",
        settings=BenignSettings,
        impl="qunlearn.attacks.finetune:BenignFinetune",
        summary="fine-tune on retain text only (no forget data)",
        source="arXiv 2505.22310",
        strength="steps",
        finetunes=True,
    )
)

__all__ = ["RELEARN", "HELDOUT_RELEARN", "BENIGN_FINETUNE"]
