"""The headline tables: retention per unlearned model and scheme, the Table 1 layout, the summary,
and their intervals (``intervals``: mean and bootstrap interval per headline model, scheme and
metric, seeds folded)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from .. import paths
from ..config import ReportConfig
from ..registries import METHODS
from . import intervals as iv
from .frame import MODEL_KEY, UNLEARNED, column, metric_specs, privleak_reference, wide_metrics
from .retention import forget_retention, retention_metrics

RETENTION_COLUMNS = [*MODEL_KEY, "scheme", "retention"]
INTERVAL_COLUMNS = [*MODEL_KEY, "scheme", "seeds", "metric", "mean", "lo", "hi"]
RETENTION = "retention"  # the metric name of retention rows in intervals.csv
MODEL_ORDER = {"target": 0, "retrain": 1, "unlearn": 2, "external": 3}


def table1_columns(df: pd.DataFrame | None = None) -> list[str]:
    """Table 1's metric columns in spec order; given the frame, an optional group's columns
    (``enabled_by``, e.g. the utility scores) only where some evaluation has them."""
    present = None if df is None else set(df.metric)
    return [s.column for s in metric_specs() if not (s.enabled_by and present is not None and s.column not in present)]


def retention(df: pd.DataFrame, models: tuple[str, ...] = UNLEARNED) -> pd.DataFrame:
    """Per unlearned model (an arm or an external model; ``models``: the ``model`` values to
    report, e.g. also the deployments) and scheme: :func:`forget_retention` against the target at
    the same scheme."""
    specs = retention_metrics()
    wide = wide_metrics(df, [s.column for s in specs])
    target = wide[wide.model == "target"].set_index(["dataset", "scheme"])
    rows = []
    for _, r in wide[wide.model.isin(models)].iterrows():
        t = target.loc[(r.dataset, r.scheme)]
        value = forget_retention({s.key: r[s.column] for s in specs}, {s.key: t[s.column] for s in specs})
        rows.append({**{k: r[k] for k in MODEL_KEY}, "scheme": r.scheme, "retention": value})
    return pd.DataFrame(rows, columns=RETENTION_COLUMNS)


def _model_label(row) -> str:
    if row.model == "external":
        return f"{row.method} (external)"
    if row.model != "unlearn":
        return row.model.capitalize()
    star = "*" if row.selected else ""
    return f"{row.method.upper()} (alpha={row.alpha}{star}, lr={row.lr})"


def table1(df: pd.DataFrame, scheme_order: list[str], ivals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows model x scheme, columns M1-M4 (Table 1 of the paper), then the utility scores where the
    dataset enables them; with ``ivals`` (:func:`interval_table`)
    also ``<column> lo`` and ``<column> hi`` after the four and the number of seeds."""
    cols = table1_columns(df)
    wide = wide_metrics(df, cols)
    wide["_m"] = wide.model.map(MODEL_ORDER)
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order)})
    wide = wide.sort_values(["dataset", "_m", "method", "model_id", "_s"], kind="stable")
    wide.insert(1, "row", [_model_label(r) for r in wide.itertuples()])
    out = wide[["dataset", "row", "scheme", *cols]].reset_index(drop=True)
    if ivals is None:
        return out
    idx = ivals.set_index(["dataset", "model_id", "scheme", "metric"])
    keys = list(zip(wide.dataset, wide.model_id, wide.scheme))
    for c in cols:
        for bound in ("lo", "hi"):
            out[f"{c} {bound}"] = [float(idx[bound].get((*k, c), math.nan)) for k in keys]
    out["seeds"] = [int(idx.seeds.get((*k, cols[0]), 1)) for k in keys]
    return out


def with_intervals(table: pd.DataFrame, floatfmt: str = "{:.1f}") -> pd.DataFrame:
    """The reader's layout of a table with ``<c> lo``/``<c> hi`` columns: ``mean [lo, hi]`` cells."""
    out = table.copy()
    for c in [c for c in table.columns if f"{c} lo" in table.columns]:
        out[c] = [
            "--"
            if math.isnan(m)
            else floatfmt.format(m) + ("" if math.isnan(lo) else f" [{floatfmt.format(lo)}, {floatfmt.format(hi)}]")
            for m, lo, hi in zip(table[c], table[f"{c} lo"], table[f"{c} hi"])
        ]
        out = out.drop(columns=[f"{c} lo", f"{c} hi"])
    return out


def _replicates(head: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(dataset, base-seed model id) -> its model ids, the base seed's first, then by seed."""
    runs: dict[tuple[str, str], list[str]] = {}
    for ds, mid in sorted(set(zip(head.dataset, head.model_id)), key=lambda k: (k[0], int(paths.seed_of(k[1]) or -1))):
        runs.setdefault((ds, paths.seedless_id(mid)), []).append(mid)
    return runs


def interval_table(head: pd.DataFrame, items: dict, cfg: ReportConfig) -> pd.DataFrame:
    """intervals.csv: per headline model (its replicates folded in), scheme and metric the mean over
    seeds and the bootstrap interval (report.bootstrap; report/intervals.py), and retention's for
    the unlearned models. A metric without per-item scores (PrivLeak) has no interval."""
    runs = _replicates(head)
    rows = []
    values = head.set_index(["dataset", "model_id", "scheme", "metric"]).value
    for (ds, arm), mids in runs.items():
        first = head[(head.dataset == ds) & (head.model_id == mids[0])].iloc[0]
        key = {**{k: first[k] for k in MODEL_KEY}, "model_id": arm}
        for scheme in sorted(set(head[(head.dataset == ds) & (head.model_id == mids[0])].scheme)):
            seed_items = [items.get((ds, m, scheme), {}) for m in mids]
            for spec in metric_specs():
                vals = [values.get((ds, m, scheme, spec.column), math.nan) for m in mids]
                point = float(sum(vals) / len(vals))
                scores = [it.get(spec.key) for it in seed_items]
                i = (
                    iv.metric_interval(scores, cfg.bootstrap, spec.scale)
                    if all(x is not None for x in scores)
                    else iv.NAN
                )
                rows.append(
                    {**key, "scheme": scheme, "seeds": len(mids), "metric": spec.column, "mean": point}
                    | {"lo": i.lo, "hi": i.hi}
                )
            if first.model == "unlearn":
                target = items.get((ds, "target", scheme), {})
                i = iv.retention_interval(seed_items, target, cfg.bootstrap) if target else iv.NAN
                rows.append({**key, "scheme": scheme, "seeds": len(mids), "metric": RETENTION, **i.as_dict()})
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def headline_interval(head: pd.DataFrame, items: dict, cfg: ReportConfig) -> dict:
    """Per dataset: the mean retention of the utility-constrained headline arms at full precision and
    at ``report.quantized_scheme``, and their paired difference (quantized - full precision), each
    with its bootstrap interval (seeds folded, report/intervals.py)."""
    fp, q = cfg.full_precision_scheme, cfg.quantized_scheme
    out = {}
    runs = _replicates(head[head.model == "unlearn"])
    for ds in sorted(head.dataset.unique()):
        arms = {arm: mids for (d, arm), mids in runs.items() if d == ds}
        arms = {a: m for a, m in arms.items() if paths.parse_model_id(a).method in cfg.utility_constrained}
        targets = (items.get((ds, "target", fp)), items.get((ds, "target", q)))
        pairs = [
            ([items.get((ds, m, fp)) for m in mids], [items.get((ds, m, q)) for m in mids]) for mids in arms.values()
        ]
        if not all(targets) or any(x is None for a, b in pairs for x in (*a, *b)):
            continue
        res = iv.paired_retention(pairs, targets, cfg.bootstrap)
        out[ds] = {
            "schemes": {"full_precision": fp, "quantized": q},
            "full_precision": res["a"].as_dict(),
            "quantized": res["b"].as_dict(),
            "difference_quantized_minus_full_precision": res["difference"].as_dict(),
            "seeds": {paths.parse_model_id(a).method: len(m) for a, m in sorted(arms.items())},
            "bootstrap": dataclasses.asdict(cfg.bootstrap),
        }
    return out


def retention_wide(ret: pd.DataFrame, schemes: list[str]) -> pd.DataFrame:
    """retention.md/.tex: one row per (dataset, method, alpha, lr), one column per scheme in ``schemes`` order."""
    wide = ret.pivot_table(
        index=["dataset", "method", "alpha", "lr"], columns="scheme", values="retention"
    ).reset_index()
    return wide[[c for c in wide.columns if c not in schemes] + [s for s in schemes if s in wide]]


# The summary's entry for the mean over datasets (present when a run has two or more datasets).
MEAN_OVER_DATASETS = "mean_over_datasets"
_AVERAGED = ("mean_retention_utility_constrained", "target_m2_relative_to_full_precision")


def mean_over_datasets(per_dataset: dict) -> dict:
    """The unweighted mean over datasets of each dataset's per-scheme headline numbers (the paper's
    "21% at full precision, 83% at 4 bits" is this mean over NEWS and BOOKS). A scheme enters only
    where every dataset reports it, so the mean never silently covers a subset of the datasets."""
    out: dict = {"datasets": sorted(per_dataset)}
    for name in _AVERAGED:
        tables = [per_dataset[ds][name] for ds in out["datasets"]]
        common = [s for s in tables[0] if all(s in t for t in tables)]
        out[name] = {s: float(sum(t[s] for t in tables) / len(tables)) for s in common}
    return out


def summary(df: pd.DataFrame, ret: pd.DataFrame, cfg: ReportConfig) -> dict:
    """Headline numbers per dataset: mean retention of the utility-constrained methods per scheme,
    and the target's own M2 kept at each scheme relative to full precision; each external model's
    retention per scheme (only when there are external models); with two or more datasets also their
    mean (:func:`mean_over_datasets`, under ``MEAN_OVER_DATASETS``)."""
    out = {}
    if MEAN_OVER_DATASETS in set(df.dataset):
        raise ValueError(f"a dataset may not be named {MEAN_OVER_DATASETS!r} (the summary's mean over datasets)")
    ext = ret[ret.model == "external"]
    ret = ret[ret.model == "unlearn"]
    masked = ret.method.map(lambda m: METHODS[m].saliency_masked).astype(bool)
    for ds in sorted(df.dataset.unique()):
        r = ret[(ret.dataset == ds) & ret.method.isin(cfg.utility_constrained)]
        t = df[(df.dataset == ds) & (df.model == "target") & (df.metric == column("knowmem_f"))].set_index("scheme")
        fp = t.value.get(cfg.full_precision_scheme, math.nan)
        out[ds] = {
            "mean_retention_utility_constrained": {s: float(g.retention.mean()) for s, g in r.groupby("scheme")},
            "target_m2_relative_to_full_precision": {
                s: (float(v / fp) if fp > 0 else math.nan) for s, v in t.value.items()
            },
            "methods": sorted(r.method.unique().tolist()),
            "mean_retention_sure": {
                s: float(g.retention.mean()) for s, g in ret[(ret.dataset == ds) & masked].groupby("scheme")
            },
            "alpha": {
                m: float(a)
                for m, a in ret[ret.dataset == ds].drop_duplicates("method").set_index("method").alpha.items()
            },
            "privleak_reference": privleak_reference(df, ds, cfg),
        }
        e = ext[ext.dataset == ds]
        if len(e):
            out[ds]["external_retention"] = {
                m: {s: float(v) for s, v in zip(g.scheme, g.retention)} for m, g in e.groupby("method")
            }
    if len(out) > 1:
        out[MEAN_OVER_DATASETS] = mean_over_datasets(out)
    return out


def headline_retention(ret: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """``ret`` with a ``headline`` column after the model key (the arms the headline tables report)."""
    head = set(zip(df[df.headline].dataset, df[df.headline].model_id))
    ret = ret.copy()
    ret.insert(len(MODEL_KEY), "headline", [(d, m) in head for d, m in zip(ret.dataset, ret.model_id)])
    return ret
