"""Every registered metric (``qunlearn.plugins.METRICS``) on one loaded model; an optional group
(``MetricSpec.enabled_by``) only where the dataset switches it on."""

from __future__ import annotations

import importlib
from pathlib import Path

from .. import registries
from ..config import EvalConfig


def evaluate_all(
    model, tokenizer, data_dir: str | Path, cfg: EvalConfig, progress: bool = True, groups: dict | None = None
) -> dict:
    """The eval JSON's ``metrics`` (spec.key -> score, in [0, 1]; PrivLeak needs the retrain AUC, so
    aggregation derives it) and ``items`` (spec.name -> per-item outputs), in registration order.
    ``groups``: enabled_by -> resolved settings of the optional metric groups the dataset switched on
    (a metric with ``enabled_by`` runs only when its group is there and ``enabled``); each group's
    record (settings, chat template used) goes under its name."""
    groups = {k: v for k, v in (groups or {}).items() if getattr(v, "enabled", False)}
    out: dict = {"metrics": {}, "items": {}}
    for spec in registries.METRICS.specs():
        if spec.enabled_by is None:
            result = spec.load()(model, tokenizer, data_dir, cfg, progress)
        elif spec.enabled_by in groups:
            result = spec.load()(model, tokenizer, data_dir, cfg, progress, settings=groups[spec.enabled_by])
        else:
            continue
        out["metrics"][spec.key] = result["score"]
        out["items"][spec.name] = result["items"]
    for name, settings in groups.items():
        module = next(s for s in registries.METRICS.specs() if s.enabled_by == name).impl.partition(":")[0]
        out[name] = importlib.import_module(module).record(settings, tokenizer)
    return out
