"""Every registered metric (``qunlearn.plugins.METRICS``) on one loaded model."""

from __future__ import annotations

from pathlib import Path

from .. import registries
from ..config import EvalConfig


def evaluate_all(model, tokenizer, data_dir: str | Path, cfg: EvalConfig, progress: bool = True) -> dict:
    """The eval JSON's ``metrics`` (spec.key -> score, in [0, 1]; PrivLeak needs the retrain AUC, so
    aggregation derives it) and ``items`` (spec.name -> per-item outputs), in registration order."""
    out: dict = {"metrics": {}, "items": {}}
    for spec in registries.METRICS.specs():
        result = spec.load()(model, tokenizer, data_dir, cfg, progress)
        out["metrics"][spec.key] = result["score"]
        out["items"][spec.name] = result["items"]
    return out
