"""Whose facts each record holds: the entities (people) the synthetic corpus declares, the halves
of the forget people a held-out relearning attack trains on and is scored on, and the forget-side
scores of an evaluation recomputed over one half. Torch-free.

The synthetic corpus (data/synthetic.py) gives every raw record ``entities`` (the people its text
names; a QA-mixing record names several) and every verbmem/knowmem item its ``entity``; the
evaluation copies an item's ``entity`` into its per-item outputs. MUSE's own data declares none.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..config import DatasetConfig
from . import muse_format
from .muse_format import ENTITIES, ENTITY
from .synthetic import split_sizes  # noqa: F401  (the raw records per split, for config-time checks)

# What each data source writes beyond MUSE's layout (stages.prepare_data: synthetic.py, muse.py).
_DECLARES_ENTITIES = {"synthetic": True, "muse": False}
_HAS_UPDATE_SPLIT = {"synthetic": True, "muse": False}


def _source(dataset_cfg: DatasetConfig) -> str:
    if dataset_cfg.source == "reuse":
        raise ValueError(
            f"a 'source: reuse' dataset has the data of {dataset_cfg.reuse!r}: ask about that dataset's config"
        )
    return dataset_cfg.source


def dataset_declares_entities(dataset_cfg: DatasetConfig) -> bool:
    """Whether the dataset's data will declare entities (config time, before any data exists)."""
    return _DECLARES_ENTITIES[_source(dataset_cfg)]


def dataset_has_update_split(dataset_cfg: DatasetConfig) -> bool:
    """Whether the dataset's data will hold raw/update and knowmem/update_qa (LLM Surgery)."""
    return _HAS_UPDATE_SPLIT[_source(dataset_cfg)]


def declares_entities(data_dir: str | Path) -> bool:
    """Whether every raw/forget record of the written data carries ``entities``."""
    return all(ENTITIES in r for r in muse_format.read_split(data_dir, "raw", "forget"))


def _raw_records(data_dir: str | Path, split: str) -> list[dict]:
    records = muse_format.read_split(data_dir, "raw", split)
    if not all(ENTITIES in r for r in records):
        raise muse_format.DataFormatError(
            f"{muse_format.split_path(data_dir, 'raw', split)}: records without {ENTITIES!r}; only the "
            "synthetic corpus declares whose facts a record holds (rerun its data stage if it predates that)"
        )
    return records


def forget_entities(data_dir: str | Path) -> list[str]:
    """The people of the forget split, sorted."""
    return sorted({e for r in _raw_records(data_dir, "forget") for e in r[ENTITIES]})


def heldout_halves(entities: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Two disjoint halves of ``entities`` drawn by ``seed``, each sorted: A (floor(n/2) people, the
    attack trains on them) and B (the rest, scored on)."""
    people = sorted(set(entities))
    if len(people) != len(entities):
        raise ValueError(f"heldout_halves: entities repeat: {sorted(entities)}")
    if len(people) < 2:
        raise ValueError(f"heldout_halves: need at least 2 entities to halve, got {len(people)}")
    random.Random(seed).shuffle(people)
    half = len(people) // 2
    return sorted(people[:half]), sorted(people[half:])


def records_within(data_dir: str | Path, split: str, keep: set[str]) -> list[str]:
    """Texts of the raw ``split`` records all of whose entities are in ``keep``: a record that also
    names someone else (a QA-mixing record) is left out, as training on it would teach their facts."""
    return [r["text"] for r in _raw_records(data_dir, split) if set(r[ENTITIES]) <= keep]


def subset_scores(eval_json: dict, keep: set[str]) -> dict[str, float]:
    """The forget-side retention metrics (verbmem_f, knowmem_f) of an evaluation recomputed over the
    items about ``keep``: each metric is the mean of its per-item ``score`` (evaluate/verbmem.py,
    knowmem.py), so keeping everyone gives back ``eval_json["metrics"]`` exactly."""
    import numpy as np

    from ..evaluate import knowmem, verbmem

    out = {}
    for spec in (verbmem.SPEC, knowmem.FORGET):
        items = eval_json.get("items", {}).get(spec.name)
        if not isinstance(items, list) or not items:
            raise ValueError(f"subset_scores: the evaluation has no per-item outputs of {spec.name}")
        if not all(ENTITY in it for it in items):
            raise ValueError(
                f"subset_scores: {spec.name} items without {ENTITY!r}: the evaluation predates entity "
                "declarations or its data declares none"
            )
        scores = [it["score"] for it in items if it[ENTITY] in keep]
        if not scores:
            raise ValueError(f"subset_scores: no {spec.name} item is about any of {sorted(keep)}")
        out[spec.key] = float(np.mean(scores))
    return out


def dataset_has_raw_split(dataset_cfg: DatasetConfig, split: str) -> bool:
    """Whether the dataset's data will hold ``raw/<split>`` (a method's ``reads_splits``): MUSE's
    raw splits every source writes; ``update`` only where :func:`dataset_has_update_split`."""
    if split == "update":
        return dataset_has_update_split(dataset_cfg)
    return split in ("forget", "retain1", "retain2", "holdout")
