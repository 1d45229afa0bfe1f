"""Fine-tuning attacks: relearning on the forget set, held-out relearning (RTT), benign fine-tuning.

- ``relearn``: fine-tune on a seeded fraction of the forget set's raw text for a grid of step
  counts. Defaults: the MUSE relearning recipe of OPTML-Group/Unlearn-Smooth (AdamW, lr 1e-5,
  cosine schedule, batch 4; NEWS steps {100, 125, 150}, BOOKS {50, 75, 100}).
- ``heldout_relearn`` (retraining on T, Deeb & Roger 2024): the forget entities are split into
  two disjoint seeded halves (``data.entities.heldout_halves``); the model is relearned on the
  records of half A only and scored (KnowMem, VerbMem) on the items of half B only.
- ``benign_finetune``: fine-tune on retain text only (no forget data; arXiv 2505.22310).

Every fine-tuning attack also runs on the retrain model with the same data and budget (trait
``finetunes``): the tables report recovery above that control (Feng et al. 2025).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..paths import fmt_num
from ..plugins import ATTACKS, AttackSpec
from .base import check_split


@dataclass
class FinetuneSettings:
    GRID = ("steps",)  # the settings that span the grid (id segments, not job params)
    steps: list[int] = field(default_factory=lambda: [100, 125, 150])  # the grid (MUSE NEWS)
    lr: float = 1.0e-5
    batch_size: int = 4
    scheduler: str = "cosine"  # cosine | constant
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

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


@dataclass
class RelearnSettings(FinetuneSettings):
    # the seeded share of the forget set's records relearned on (at least one record: checked
    # against the dataset's size at config time where it is known)
    fraction: float = 0.5
    split: str = "forget"

    def validate(self, where: str) -> None:
        super().validate(where)
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"{where}.fraction: must be in (0, 1], got {self.fraction}")
        check_split(self.split, f"{where}.split", allow_forget=True)


@dataclass
class HeldoutRelearnSettings(FinetuneSettings):
    pass


@dataclass
class BenignSettings(FinetuneSettings):
    split: str = "retain1"  # the unlearning retain set D_r; retain2 is the other retain-side split

    def validate(self, where: str) -> None:
        super().validate(where)
        check_split(self.split, f"{where}.split")


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

__all__ = ["RELEARN", "HELDOUT_RELEARN", "BENIGN_FINETUNE", "fmt_num"]
