"""The headline tables: retention per unlearned model and scheme, the Table 1 layout, the summary."""

from __future__ import annotations

import math

import pandas as pd

from ..config import ReportConfig
from ..registries import METHODS
from .frame import MODEL_KEY, column, metric_specs, privleak_reference, wide_metrics
from .retention import forget_retention, retention_metrics

RETENTION_COLUMNS = [*MODEL_KEY, "scheme", "retention"]
MODEL_ORDER = {"target": 0, "retrain": 1, "unlearn": 2}


def table1_columns(df: pd.DataFrame | None = None) -> list[str]:
    """Table 1's metric columns in spec order; given the frame, an optional group's columns
    (``enabled_by``, e.g. the utility scores) only where some evaluation has them."""
    present = None if df is None else set(df.metric)
    return [s.column for s in metric_specs() if not (s.enabled_by and present is not None and s.column not in present)]


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """Per unlearned model and scheme: :func:`forget_retention` against the target at the same scheme."""
    specs = retention_metrics()
    wide = wide_metrics(df, [s.column for s in specs])
    target = wide[wide.model == "target"].set_index(["dataset", "scheme"])
    rows = []
    for _, r in wide[wide.model == "unlearn"].iterrows():
        t = target.loc[(r.dataset, r.scheme)]
        value = forget_retention({s.key: r[s.column] for s in specs}, {s.key: t[s.column] for s in specs})
        rows.append({**{k: r[k] for k in MODEL_KEY}, "scheme": r.scheme, "retention": value})
    return pd.DataFrame(rows, columns=RETENTION_COLUMNS)


def _model_label(row) -> str:
    if row.model != "unlearn":
        return row.model.capitalize()
    star = "*" if row.selected else ""
    return f"{row.method.upper()} (alpha={row.alpha}{star}, lr={row.lr})"


def table1(df: pd.DataFrame, scheme_order: list[str]) -> pd.DataFrame:
    """Rows model x scheme, columns M1-M4 (Table 1 of the paper), then the utility scores where the
    dataset enables them."""
    cols = table1_columns(df)
    wide = wide_metrics(df, cols)
    wide["_m"] = wide.model.map(MODEL_ORDER)
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order)})
    wide = wide.sort_values(["dataset", "_m", "method", "model_id", "_s"], kind="stable")
    wide.insert(1, "row", [_model_label(r) for r in wide.itertuples()])
    return wide[["dataset", "row", "scheme", *cols]].reset_index(drop=True)


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
    and the target's own M2 kept at each scheme relative to full precision; with two or more
    datasets also their mean (:func:`mean_over_datasets`, under ``MEAN_OVER_DATASETS``)."""
    out = {}
    if MEAN_OVER_DATASETS in set(df.dataset):
        raise ValueError(f"a dataset may not be named {MEAN_OVER_DATASETS!r} (the summary's mean over datasets)")
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
    if len(out) > 1:
        out[MEAN_OVER_DATASETS] = mean_over_datasets(out)
    return out


def headline_retention(ret: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """``ret`` with a ``headline`` column after the model key (the arms the headline tables report)."""
    head = set(zip(df[df.headline].dataset, df[df.headline].model_id))
    ret = ret.copy()
    ret.insert(len(MODEL_KEY), "headline", [(d, m) in head for d, m in zip(ret.dataset, ret.model_id)])
    return ret
