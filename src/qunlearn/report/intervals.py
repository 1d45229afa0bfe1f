"""Confidence intervals of the tables: a percentile bootstrap over the evaluated items within a run,
combined across seeds where a row has several (``seeds`` in the config), deterministic
(``report.bootstrap``: resamples, seed, level).

The resampling unit is the item: a metric whose eval-JSON items each carry a ``score`` and whose
score is their mean (M1 VerbMem, M2 and M4 KnowMem) is resampled item by item. The same item draws
serve every model and scheme of a dataset (draw r picks the same questions for the unlearned model,
the target, full precision and 4 bits): retention (unlearned / target, per metric) and the
difference between two schemes are *paired*. Where a row has several seeds, each replicate also
draws the seeds with replacement (a two-level bootstrap: seeds, then items) and averages the drawn
seeds' statistics; the point estimate is the mean over seeds of the observed statistic. Metrics
without per-item scores (M3 PrivLeak: an AUC of two score lists) get the point estimate only.

Everything here is numpy; draws come from ``numpy.random.default_rng`` seeded with the config's
seed, so a table is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import paths, runtime
from ..config import BootstrapConfig
from ..registries import METRICS
from .retention import retention_metrics


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float

    def as_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}


NAN = Interval(math.nan, math.nan, math.nan)


def item_scores(eval_json: dict) -> dict[str, np.ndarray]:
    """metric key -> per-item scores, for the metrics whose score is the mean of their items' scores."""
    out = {}
    for spec in METRICS.specs():
        items = eval_json.get("items", {}).get(spec.name)
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and "score" in i for i in items):
            continue
        scores = np.asarray([float(i["score"]) for i in items])
        if math.isclose(float(scores.mean()), float(eval_json["metrics"][spec.key]), rel_tol=1e-9, abs_tol=1e-12):
            out[spec.key] = scores
    return out


def read_item_scores(eval_paths: list[str]) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """(dataset, model_id, scheme) -> :func:`item_scores` of each eval JSON."""
    return {paths.parse_eval_file(str(p)): item_scores(runtime.read_json(p)) for p in eval_paths}


def item_draws(n_items: dict[str, int], cfg: BootstrapConfig) -> dict[str, np.ndarray]:
    """metric key -> (resamples, n) item indices. Seeded by ``cfg.seed`` alone (and the item
    counts), so every statistic of a dataset uses the same draws: comparisons are paired."""
    rng = np.random.default_rng(cfg.seed)
    return {k: rng.integers(0, n, size=(cfg.resamples, n)) for k, n in sorted(n_items.items())}


def seed_draws(n_seeds: int, cfg: BootstrapConfig, stream: int = 0) -> np.ndarray:
    """(resamples, n_seeds) seed indices (all 0 with one seed); ``stream`` separates the units (the
    methods of a mean) whose seeds are drawn independently."""
    if n_seeds == 1:
        return np.zeros((cfg.resamples, 1), dtype=int)
    rng = np.random.default_rng([cfg.seed, 1 + stream])
    return rng.integers(0, n_seeds, size=(cfg.resamples, n_seeds))


def combine_seeds(per_seed: list[np.ndarray], draws: np.ndarray) -> np.ndarray:
    """(resamples,) replicates of the mean over seeds: replicate r averages the seeds draws[r] picks,
    each at its own item draw r."""
    stacked = np.stack(per_seed)  # (seeds, resamples)
    return stacked[draws.T, np.arange(draws.shape[0])].mean(axis=0)


def percentile(replicates: np.ndarray, point: float, level: float) -> Interval:
    reps = replicates[~np.isnan(replicates)]
    if math.isnan(point) or reps.size == 0:
        return Interval(point, math.nan, math.nan)
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(float(point), float(lo), float(hi))


def mean_replicates(scores: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return scores[draws].mean(axis=1)


def retention_replicates(
    scores: dict[str, np.ndarray], target: dict[str, np.ndarray], draws: dict[str, np.ndarray] | None
) -> np.ndarray:
    """Retention (report/retention.py: the mean over the retention metrics of unlearned / target,
    leaving out a metric the target scores 0 on) of each item draw; ``draws`` None: the observed
    value, shape (1,)."""
    ratios = []
    for spec in retention_metrics():
        u, t = scores.get(spec.key), target.get(spec.key)
        if u is None or t is None:
            return np.full(1 if draws is None else len(next(iter(draws.values()))), math.nan)
        if draws is None:
            um, tm = np.array([u.mean()]), np.array([t.mean()])
        else:
            um, tm = mean_replicates(u, draws[spec.key]), mean_replicates(t, draws[spec.key])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(tm > 0, um / np.where(tm > 0, tm, 1.0), np.nan))
    stacked = np.stack(ratios)
    with np.errstate(invalid="ignore"):
        count = (~np.isnan(stacked)).sum(axis=0)
        return np.where(count > 0, np.nansum(stacked, axis=0) / np.maximum(count, 1), np.nan)


def metric_interval(runs: list[np.ndarray], cfg: BootstrapConfig, scale: float = 1.0) -> Interval:
    """Mean and interval of an item-mean metric over the seeds ``runs`` (per-item scores each)."""
    draws = item_draws({"m": len(runs[0])}, cfg)["m"]
    point = float(np.mean([r.mean() for r in runs])) * scale
    reps = combine_seeds([mean_replicates(r, draws) for r in runs], seed_draws(len(runs), cfg)) * scale
    return percentile(reps, point, cfg.level)


def _n_items(runs: list[dict[str, np.ndarray]]) -> dict[str, int]:
    return {k: len(v) for r in runs for k, v in r.items()}


def retention_interval(
    runs: list[dict[str, np.ndarray]], target: dict[str, np.ndarray], cfg: BootstrapConfig
) -> Interval:
    """Mean and interval of the retention of one arm over its seeds ``runs`` against ``target`` (the
    target's item scores at the same scheme)."""
    draws = item_draws(_n_items([*runs, target]), cfg)
    point = float(np.mean([retention_replicates(r, target, None)[0] for r in runs]))
    reps = combine_seeds([retention_replicates(r, target, draws) for r in runs], seed_draws(len(runs), cfg))
    return percentile(reps, point, cfg.level)


def paired_retention(
    arms: list[tuple[list[dict], list[dict]]],
    targets: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    cfg: BootstrapConfig,
) -> dict[str, Interval]:
    """The mean retention over ``arms`` at two schemes and their difference, paired: each arm is
    (its seeds' item scores at scheme A, the same seeds' at scheme B), ``targets`` the target's at
    A and at B. One item draw and, per arm, one seed draw serve both schemes, so the difference's
    interval leaves out what the two schemes share. Returns {"a", "b", "difference" (b - a)}."""
    everything = [r for a, b in arms for r in (*a, *b)] + list(targets)
    draws = item_draws(_n_items(everything), cfg)
    points = {"a": [], "b": []}
    reps = {"a": [], "b": []}
    for i, (runs_a, runs_b) in enumerate(arms):
        sd = seed_draws(len(runs_a), cfg, stream=i)
        for key, runs, target in (("a", runs_a, targets[0]), ("b", runs_b, targets[1])):
            points[key].append(np.mean([retention_replicates(r, target, None)[0] for r in runs]))
            reps[key].append(combine_seeds([retention_replicates(r, target, draws) for r in runs], sd))
    if not arms:
        return {"a": NAN, "b": NAN, "difference": NAN}
    pa, pb = float(np.mean(points["a"])), float(np.mean(points["b"]))
    ra, rb = np.mean(reps["a"], axis=0), np.mean(reps["b"], axis=0)
    return {
        "a": percentile(ra, pa, cfg.level),
        "b": percentile(rb, pb, cfg.level),
        "difference": percentile(rb - ra, pb - pa, cfg.level),
    }
