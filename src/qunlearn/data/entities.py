"""PLACEHOLDER until the entities branch lands (replaced by it)."""

from __future__ import annotations


def dataset_declares_entities(cfg) -> bool:
    return cfg.source == "synthetic"


def split_sizes(cfg) -> dict[str, int]:
    n_forget = round(cfg.n_people * cfg.forget_fraction)
    return {"forget": n_forget * cfg.n_passages}
