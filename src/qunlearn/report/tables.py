"""The headline tables: retention per unlearned model and scheme, the Table 1 layout, the summary."""

from __future__ import annotations

import math

import pandas as pd

from ..config import ReportConfig
from ..registries import METHODS
from .frame import MODEL_KEY, UNLEARNED, column, metric_specs, wide_metrics
from .retention import forget_retention, retention_metrics

RETENTION_COLUMNS = [*MODEL_KEY, "scheme", "retention"]
MODEL_ORDER = {"target": 0, "retrain": 1, "unlearn": 2, "external": 3}


def table1_columns() -> list[str]:
    return [s.column for s in metric_specs()]


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """Per unlearned model (an arm or an external model) and scheme: :func:`forget_retention` against
    the target at the same scheme."""
    specs = retention_metrics()
    wide = wide_metrics(df, [s.column for s in specs])
    target = wide[wide.model == "target"].set_index(["dataset", "scheme"])
    rows = []
    for _, r in wide[wide.model.isin(UNLEARNED)].iterrows():
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


def table1(df: pd.DataFrame, scheme_order: list[str]) -> pd.DataFrame:
    """Rows model x scheme, columns M1-M4 (Table 1 of the paper)."""
    cols = table1_columns()
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


def summary(df: pd.DataFrame, ret: pd.DataFrame, cfg: ReportConfig) -> dict:
    """Headline numbers per dataset: mean retention of the utility-constrained methods per scheme,
    and the target's own M2 kept at each scheme relative to full precision; each external model's
    retention per scheme (only when there are external models)."""
    out = {}
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
        }
        e = ext[ext.dataset == ds]
        if len(e):
            out[ds]["external_retention"] = {
                m: {s: float(v) for s, v in zip(g.scheme, g.retention)} for m, g in e.groupby("method")
            }
    return out


def headline_retention(ret: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """``ret`` with a ``headline`` column after the model key (the arms the headline tables report)."""
    head = set(zip(df[df.headline].dataset, df[df.headline].model_id))
    ret = ret.copy()
    ret.insert(len(MODEL_KEY), "headline", [(d, m) in head for d, m in zip(ret.dataset, ret.model_id)])
    return ret
