"""The model-size study (issue 17): where does the natural regime begin?

A scale study is a config whose trained datasets have more than one model (``datasets.<name>.model``;
``Experiment.scale_study`` gives each dataset's shape, parameter count and grid snap). Per dataset,
i.e. per (size, released as trained or snapped onto the 4-bit grid), the ``scale`` table gives the
mean forget retention of the utility-constrained methods at every evaluated scheme, their M4
relative to the target's at full precision and the percentage of 4-bit codes their unlearning
changed (the weight-change analysis, as the weight-change table reads it). The ``scale_onset``
table gives, per 4-bit scheme, the smallest size released as trained whose mean retention exceeds
``ONSET_RETENTION`` (the paper's 4-bit recovery without the grid snap), or ``none``.

Both are empty (no rows) when the config is not a scale study.
"""

from __future__ import annotations

import math

import pandas as pd

from ..config import ReportConfig
from .frame import column, wide_metrics
from .quant import scheme_order
from .tables import retention

# "the natural regime has begun": mean 4-bit retention of the utility-constrained methods above this
ONSET_RETENTION = 0.6
AS_TRAINED = "as trained"
SIZE_COLUMNS = ["dataset", "release", "hidden_size", "num_layers", "intermediate_size", "params", "n_methods"]
ONSET_COLUMNS = [
    "scheme",
    "quantizer",
    "threshold",
    "onset",
    "hidden_size",
    "num_layers",
    "params",
    "retention",
]


def release_label(snap_bits: int | None) -> str:
    return AS_TRAINED if snap_bits is None else f"snapped ({snap_bits} bits)"


def four_bit(schemes: dict) -> list[str]:
    """The 4-bit schemes, in the report's scheme order."""
    return [s for s in scheme_order(schemes) if int(schemes[s]["nominal_bits"]) == 4]


def scale_table(
    df: pd.DataFrame, wc: pd.DataFrame, sizes: dict[str, dict], schemes: dict, cfg: ReportConfig
) -> pd.DataFrame:
    """One row per dataset of the study (``sizes``: dataset -> hidden_size, num_layers,
    intermediate_size, params, snap_bits), smallest model first, as trained before snapped:
    ``retention_<scheme>`` (the mean over the utility-constrained methods evaluated there; every
    evaluated scheme, most bits first), ``m4_rel`` (their mean M4 / the target's, at full precision)
    and ``pct_codes_changed_<scheme>`` for each 4-bit scheme (their mean, from the analysis rows
    ``wc``). ``df``: the headline metrics rows, replicates folded."""
    if not sizes:
        return pd.DataFrame(columns=SIZE_COLUMNS)
    methods = set(cfg.utility_constrained)
    ret = retention(df)
    ret = ret[(ret.model == "unlearn") & ret.method.isin(methods) & ret.dataset.isin(sizes)]
    evaluated = [s for s in scheme_order(schemes) if s in set(ret.scheme)]
    mean_ret = ret.groupby(["dataset", "scheme"]).retention.mean()
    fp = cfg.full_precision_scheme
    n_methods = ret[ret.scheme == fp].groupby("dataset").method.nunique()

    m4 = column("knowmem_r")
    wide = wide_metrics(df[(df.scheme == fp) & df.dataset.isin(sizes)], [m4])
    target = wide[wide.model == "target"].set_index("dataset")[m4] if m4 in wide else pd.Series(dtype=float)
    arms = wide[(wide.model == "unlearn") & wide.method.isin(methods)] if m4 in wide else wide.iloc[0:0]
    rel = arms.assign(rel=[r[m4] / target.get(r.dataset, math.nan) for _, r in arms.iterrows()])
    rel = rel[pd.notna(rel.rel) & (rel.dataset.map(target) > 0)] if not rel.empty else rel
    m4_rel = rel.groupby("dataset").rel.mean() if not rel.empty else pd.Series(dtype=float)

    four = four_bit(schemes)
    codes = wc[(wc.scope == "overall") & wc.method.isin(methods) & wc.scheme.isin(four)] if not wc.empty else wc
    pct = (
        100.0 * codes.groupby(["dataset", "scheme"]).frac_codes_changed.mean()
        if not codes.empty
        else pd.Series(dtype=float)
    )
    coded = [s for s in four if not codes.empty and s in set(codes.scheme)]

    rows = []
    for ds, size in sizes.items():
        row = {
            "dataset": ds,
            "release": release_label(size["snap_bits"]),
            **{k: size[k] for k in ("hidden_size", "num_layers", "intermediate_size", "params")},
            "n_methods": int(n_methods.get(ds, 0)),
            **{f"retention_{s}": float(mean_ret.get((ds, s), math.nan)) for s in evaluated},
            "m4_rel": float(m4_rel.get(ds, math.nan)),
            **{f"pct_codes_changed_{s}": float(pct.get((ds, s), math.nan)) for s in coded},
        }
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_snapped"] = out.release != AS_TRAINED
    out = out.sort_values(["params", "hidden_size", "num_layers", "_snapped", "dataset"], kind="stable")
    return out.drop(columns="_snapped").reset_index(drop=True)


def onset_table(scale: pd.DataFrame, schemes: dict, threshold: float = ONSET_RETENTION) -> pd.DataFrame:
    """Per 4-bit scheme of ``scale`` (:func:`scale_table`): the first size, smallest first, released
    as trained whose mean retention there exceeds ``threshold`` (``onset``: its dataset, with its
    shape, parameter count and retention), or ``onset`` "none" (no size does; numbers empty).
    "First" is the smallest such size, whether or not larger ones stay above."""
    if scale.empty:
        return pd.DataFrame(columns=ONSET_COLUMNS)
    plain = scale[scale.release == AS_TRAINED]
    rows = []
    for s in four_bit(schemes):
        col = f"retention_{s}"
        if col not in scale:
            continue
        above = plain[plain[col] > threshold]
        base = {"scheme": s, "quantizer": schemes[s]["quantizer"], "threshold": threshold}
        if above.empty:
            rows.append({**base, "onset": "none", "hidden_size": None, "num_layers": None, "params": None})
            continue
        first = above.iloc[0]
        rows.append(
            {
                **base,
                "onset": first.dataset,
                **{k: int(first[k]) for k in ("hidden_size", "num_layers", "params")},
                "retention": float(first[col]),
            }
        )
    out = pd.DataFrame(rows, columns=ONSET_COLUMNS)
    for k in ("hidden_size", "num_layers", "params"):  # whole numbers, empty where the onset is none
        out[k] = out[k].astype("Int64")
    return out.astype({"retention": float})


def onset_text(onset: pd.DataFrame) -> pd.DataFrame:
    """scale_onset.md/.tex: empty numbers shown as "--" (as the tables show a NaN)."""
    text = onset.copy()
    for k in ("hidden_size", "num_layers", "params"):
        text[k] = ["--" if pd.isna(v) else str(int(v)) for v in text[k]]
    return text


def scale_text(scale: pd.DataFrame) -> pd.DataFrame:
    """scale.md/.tex: the table without the intermediate width (the reader's layout)."""
    return scale.drop(columns=["intermediate_size"], errors="ignore")
