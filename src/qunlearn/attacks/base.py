"""What an attack implements and what it is given. Torch-free at import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..data import muse_format

if TYPE_CHECKING:
    from ..plugins import AttackSpec

# Splits an attack may never read for calibration or benign training: the forget set itself.
FORGET_SPLITS = ("forget",)
# Raw text splits a calibration or benign fine-tuning set may come from.
TEXT_SPLITS = ("forget", "retain1", "retain2", "holdout")


def check_split(split: str, where: str, allow_forget: bool = False) -> None:
    """``where`` names the config key; the forget split is rejected unless ``allow_forget``."""
    if split not in TEXT_SPLITS:
        raise ConfigError(f"{where}: unknown split {split!r}; one of {', '.join(TEXT_SPLITS)}")
    if not allow_forget and split in FORGET_SPLITS:
        raise ConfigError(
            f"{where}: {split!r} is the forget set; this attack must not read it (use retain1 or retain2)"
        )


@dataclass
class AttackContext:
    """What one attack job has besides the model it transforms.

    ``data_dir``: the dataset's MUSE-format data (``muse_format`` reads and checks its splits);
    ``tokenizer``; ``target``: the released target model (only when the spec ``needs_target``);
    ``seed``: the job's seed; ``max_length``: the model's context length; ``device``.
    ``reads`` collects what the attack read (split -> {records, sha256, ...}) for meta.json.
    """

    data_dir: Path
    tokenizer: Any
    seed: int
    max_length: int
    device: Any = None
    target: Any = None
    reads: dict = field(default_factory=dict)


class Attack:
    """Built once per job from its spec, resolved settings and point (the id's key -> value text)."""

    def __init__(self, spec: AttackSpec, settings: Any, point: dict[str, str]):
        self.spec, self.settings, self.point = spec, settings, point

    def apply(self, model, ctx: AttackContext) -> dict:
        """Transform ``model`` in place; return statistics for meta.json (JSON-serialisable)."""
        raise NotImplementedError


def record_read(ctx: AttackContext, split: str, purpose: str, used: list[str], records_used, **extra) -> None:
    """Record in ``ctx.reads["raw/<split>"]`` what an attack read: what for, the split file's record
    count and sha256 (the data stage's manifest), which records it used (``records_used``: "all",
    their indices, or a description), their number and one sha256 of their texts, and ``extra``."""
    ctx.reads[muse_format.split_key("raw", split)] = {
        "purpose": purpose,
        "split": split,
        **{f"file_{k}": v for k, v in muse_format.split_record(ctx.data_dir, "raw", split).items()},
        "records_used": records_used,
        "n_used": len(used),
        "texts_sha256": muse_format.texts_sha256(used),
        **extra,
    }


def read_raw_texts(
    ctx: AttackContext, split: str, purpose: str, choose: Callable[[int], list[int]] | None = None
) -> list[str]:
    """The texts of ``raw/<split>`` (checked against the data stage's manifest), or those at the
    indices ``choose(number of records)`` returns, in that order; the read goes into ``ctx.reads``
    (:func:`record_read`)."""
    texts = muse_format.read_texts(ctx.data_dir, "raw", split)
    if choose is None:
        record_read(ctx, split, purpose, texts, "all")
        return texts
    indices = choose(len(texts))
    used = [texts[i] for i in indices]
    record_read(ctx, split, purpose, used, list(indices))
    return used
