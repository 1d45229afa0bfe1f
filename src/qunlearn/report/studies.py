"""Tables of the studies around the headline arms (paper section 6, Tables 3-4 and the rebuttal's
ablations): the alpha grid with the selected alpha marked, SURE vs its objective, the lr sweep, the
epoch ablation, the loss variants and the rebuttal's RMU table. Which arms and schemes each study has comes from the
experiment (``studies``: study -> {"arms": [[dataset, model_id]], "schemes": [...]}, plus "headline")."""

from __future__ import annotations

import math

import pandas as pd

from ..config import ReportConfig
from ..registries import METHODS
from ..selection import read_selection
from .frame import metric_specs, wide_metrics
from .render import write_table

# output stem -> (study, the columns it varies); table3_sure is built from the headline arms
STUDY_TABLES = {
    "lr_sweep": ("lr", ["lr"]),
    "epochs_ablation": ("epochs", ["epochs"]),
    "loss_variants": ("loss_variant", ["loss"]),
}
NUMERIC = ("alpha", "lr", "epochs")
# The family of the rebuttal's RMU table: ``rmu`` (WMDP's RMU) and ``rmu_release`` (the variant the
# paper's release ran) declare it; until a config lists one of them, the table has no rows.
RMU = "rmu"


def objective(method: str) -> str:
    """The objective a saliency-masked (SURE) method masks; other methods are their own."""
    spec = METHODS[method]
    return spec.objective if spec.saliency_masked and spec.objective else method


def short_metrics() -> dict[str, str]:
    """The absolute metrics' columns -> their short names in the study tables (M1, M2, M4)."""
    return {s.column: s.column.split("_")[0] for s in metric_specs() if not s.relative_to and not s.enabled_by}


def study_table(
    df: pd.DataFrame, ret: pd.DataFrame, arms: list[tuple[str, str]], vary: list[str], schemes: list[str]
) -> pd.DataFrame:
    """One row per arm: dataset, method, the varied columns, then M1/M2/M4 and retention per scheme."""
    ids = {tuple(a) for a in arms}
    pick = lambda d: d[[(ds, mid) in ids for ds, mid in zip(d.dataset, d.model_id)]]  # noqa: E731
    short = short_metrics()
    wide = wide_metrics(pick(df), list(short))
    r = pick(ret)
    rows = []
    for (ds, mid), g in wide.groupby(["dataset", "model_id"], sort=False):
        first = g.iloc[0]
        row = {"dataset": ds, "method": first.method, **{v: first[v] for v in vary}}
        for s in schemes:
            gs = g[g.scheme == s]
            for m, name in short.items():
                row[f"{s} {name}"] = float(gs[m].iloc[0]) if len(gs) else math.nan
            rs = r[(r.dataset == ds) & (r.model_id == mid) & (r.scheme == s)].retention
            row[f"{s} ret"] = float(rs.iloc[0]) if len(rs) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    sort = ["dataset", "method", *vary]
    numeric = {v: out[v].astype(float) for v in vary if v in NUMERIC}
    out = out.assign(**{f"_{k}": v for k, v in numeric.items()})
    out = out.sort_values([f"_{v}" if v in numeric else v for v in sort], kind="stable")
    return out.drop(columns=[f"_{k}" for k in numeric]).reset_index(drop=True)


def alpha_grid_table(df, ret, arms, schemes, selections: dict[str, str]) -> pd.DataFrame:
    """The grid arms, with whether each alpha met the utility floor and which one was selected."""
    table = study_table(df, ret, arms, ["alpha"], schemes)
    if table.empty:
        return table
    chosen = {}
    for key, path in selections.items():
        ds, method = key.split("/", 1)
        sel = read_selection(path)
        chosen[(ds, method)] = (float(sel["alpha"]), {float(g["alpha"]): g["meets_utility"] for g in sel["grid"]})
    table["meets_utility"] = [
        chosen.get((r.dataset, r.method), (None, {}))[1].get(float(r.alpha)) for r in table.itertuples()
    ]
    table["selected"] = [
        "*" if chosen.get((r.dataset, r.method), (None,))[0] == float(r.alpha) else "" for r in table.itertuples()
    ]
    return table


def sure_table(df, ret, cfg: ReportConfig, headline_ids: list[tuple[str, str]]) -> pd.DataFrame:
    """Headline arms of saliency-masked (SURE) methods beside the headline arms of their objectives."""
    method = lambda mid: mid.split("/")[1]  # noqa: E731  (headline ids are unlearned arms)
    sure = {method(mid) for _, mid in headline_ids if METHODS[method(mid)].saliency_masked}
    keep = {objective(m) for m in sure} | sure
    arms = [(ds, mid) for ds, mid in headline_ids if method(mid) in keep]
    return study_table(df, ret, arms, ["lr"], [cfg.full_precision_scheme, cfg.quantized_scheme])


def rmu_table(df, ret, cfg: ReportConfig, headline_ids: list[tuple[str, str]]) -> pd.DataFrame:
    """The rebuttal's RMU table (MUSE-Books): the headline arms of the RMU family (``rmu``,
    ``rmu_release``) beside the utility-constrained methods' at full precision and the quantized
    scheme; empty while no method of the family is configured."""
    method = lambda mid: mid.split("/")[1]  # noqa: E731  (headline ids are unlearned arms)
    rmu = {method(mid) for _, mid in headline_ids if METHODS[method(mid)].family == RMU}
    if not rmu:
        return pd.DataFrame()
    keep = {*rmu, *cfg.utility_constrained}
    arms = [(ds, mid) for ds, mid in headline_ids if method(mid) in keep]
    return study_table(df, ret, arms, ["lr"], [cfg.full_precision_scheme, cfg.quantized_scheme])


def write_studies(
    df: pd.DataFrame,
    ret: pd.DataFrame,
    cfg: ReportConfig,
    studies: dict,
    selections: dict[str, str],
    out: dict[str, str],
) -> None:
    get = lambda name: studies.get(name, {"arms": [], "schemes": []})  # noqa: E731
    grid = get("alpha_grid")
    write_table(out, "table4_alpha_grid", alpha_grid_table(df, ret, grid["arms"], grid["schemes"], selections))
    headline = [tuple(a) for a in get("headline")["arms"]]
    write_table(out, "table3_sure", sure_table(df, ret, cfg, headline))
    write_table(out, "rmu", rmu_table(df, ret, cfg, headline))
    for stem, (study, vary) in STUDY_TABLES.items():
        s = get(study)
        write_table(out, stem, study_table(df, ret, s["arms"], vary, s["schemes"]))
