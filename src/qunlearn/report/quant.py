"""Quantizer tables: the GPTQ/AWQ table (paper Tables 2/3), retention per scheme and bits (the plot
the reviewers asked for, as a table), and the weight-change table (the rebuttal's cosine similarity
and changed-code fraction); their figures are in ``figures``.

Reads metrics.csv (rule ``aggregate``: the headline rows, with alphas resolved from the selections;
the same metrics and retention definition as Table 1) and the analysis JSONs of rule ``analysis``;
scheme facts (quantizer, bits) come from the experiment's scheme table, never from a scheme's name.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import deploy, paths, runtime
from ..config import ReportConfig
from ..registries import METHODS
from .frame import DEPLOYMENT, MODEL_KEY, column, parse_eval_path, wide_metrics
from .tables import retention, table1

WEIGHT_COLUMNS = [
    "n_weights",
    "cosine",
    "rel_l2",
    "frac_fp_changed",
    "frac_codes_changed",
    "frac_dequant_changed",
    "q_cosine",
    "q_rel_l2",
]
KEY = ["dataset", "method", "alpha", "lr"]
MEAN_LABEL = "mean (utility-constrained)"
QUANTIZER_ORDER = ["none", "cast", "rtn", "bnb_int8", "bnb_fp4", "bnb_nf4", "gptq", "awq"]


def parse_analysis_path(path: str | Path, models: pd.DataFrame | None = None) -> dict:
    """Model key + scheme of one analysis JSON (the eval grammar under analysis/). ``models``
    (metrics rows) resolves an alpha~selected model's alpha."""
    try:
        dataset, model_id, scheme = paths.parse_analysis_file(str(path))
    except ValueError:
        raise ValueError(f"{path}: not an analysis output path ({paths.ANALYSIS_FILE})") from None
    if models is None:
        return parse_eval_path(paths.eval_file(dataset, model_id, scheme))
    rows = models[(models.dataset == dataset) & (models.model_id == model_id)]
    if rows.empty:
        raise ValueError(f"{path}: no evaluated model {model_id!r} in metrics.csv")
    return {**rows.iloc[0][MODEL_KEY].to_dict(), "scheme": scheme}


def scheme_order(schemes: dict) -> list[str]:
    """Schemes from most to fewest bits, then by quantizer family (the params' JSON is key-sorted,
    so the config's order is not available here)."""

    def key(name):
        q = schemes[name]["quantizer"]
        rank = QUANTIZER_ORDER.index(q) if q in QUANTIZER_ORDER else len(QUANTIZER_ORDER)
        return (-int(schemes[name]["nominal_bits"]), rank, name)

    return sorted(schemes, key=key)


def with_scheme_facts(df: pd.DataFrame, schemes: dict) -> pd.DataFrame:
    """``df`` with each row's scheme's quantizer and bits."""
    return df.assign(
        quantizer=[schemes[s]["quantizer"] for s in df.scheme],
        bits=[int(schemes[s]["nominal_bits"]) for s in df.scheme],
    )


def retention_by_bits(ret: pd.DataFrame, schemes: dict, cfg: ReportConfig) -> pd.DataFrame:
    """Retention per (dataset, method, scheme) with the scheme's quantizer and bits, plus the mean
    of the utility-constrained methods as method ``MEAN_LABEL``."""
    means = (
        ret[ret.method.isin(cfg.utility_constrained)].groupby(["dataset", "scheme"], as_index=False).retention.mean()
    )
    means = means.assign(method=MEAN_LABEL, alpha="", lr="")
    ret = ret[["dataset", "method", "alpha", "lr", "scheme", "retention"]]
    out = with_scheme_facts(pd.concat([ret, means[ret.columns]], ignore_index=True), schemes)
    out["_s"] = out.scheme.map({s: i for i, s in enumerate(scheme_order(schemes))})
    out["_m"] = (out.method == MEAN_LABEL).astype(int)
    out = out.sort_values(["dataset", "_m", "method", "alpha", "lr", "_s"], kind="stable")
    return out[["dataset", "method", "alpha", "lr", "scheme", "quantizer", "bits", "retention"]].reset_index(drop=True)


def method_labels(df: pd.DataFrame) -> pd.Series:
    """``method`` where a dataset has one (alpha, lr) of it, else ``method (a=.., lr=..)``."""
    counts = df.groupby(["dataset", "method"])[["alpha", "lr"]].apply(lambda g: len(g.drop_duplicates()))
    return pd.Series(
        [
            r.method
            if counts[(r.dataset, r.method)] == 1 or r.method == MEAN_LABEL
            else f"{r.method} (a={r.alpha}, lr={r.lr})"
            for r in df.itertuples()
        ],
        index=df.index,
    )


def retention_by_bits_wide(rb: pd.DataFrame, schemes: dict) -> pd.DataFrame:
    """Rows dataset x scheme (with quantizer and bits), one column per method."""
    d = rb.assign(label=method_labels(rb))
    wide = d.pivot_table(
        index=["dataset", "scheme", "quantizer", "bits"], columns="label", values="retention", sort=False
    ).reset_index()
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order(schemes))})
    wide = wide.sort_values(["dataset", "_s"], kind="stable").drop(columns="_s")
    labels = [c for c in dict.fromkeys(d.label) if c != MEAN_LABEL] + [MEAN_LABEL]
    wide.columns.name = None
    return wide[["dataset", "scheme", "quantizer", "bits", *[c for c in labels if c in wide]]].reset_index(drop=True)


def analysis_files(dirs: list[str]) -> list[str]:
    """The per-scheme JSONs of the analysis outputs (directories, one per unlearned model)."""
    out = []
    for p in map(Path, dirs):
        out += sorted(str(f) for f in p.glob("*.json")) if p.is_dir() else [str(p)]
    return out


def weight_change_long(analysis_paths: list[str], schemes: dict, models: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (model, scheme, scope) of the analysis JSONs; a headline arm's replicates
    (seeds) are averaged into one row."""
    rows = []
    for path in analysis_files(analysis_paths):
        key = parse_analysis_path(path, models)
        data = runtime.read_json(path, "a weight-change analysis", keys=("overall", "by_module", "by_layer"))
        base = {k: key[k] for k in (*KEY, "scheme")}
        rows.append({**base, "scope": "overall", **{c: data["overall"][c] for c in WEIGHT_COLUMNS}})
        for group, prefix in (("by_module", "module"), ("by_layer", "layer")):
            for name, vals in data[group].items():
                rows.append({**base, "scope": f"{prefix}:{name}", **{c: vals[c] for c in WEIGHT_COLUMNS}})
    df = pd.DataFrame(rows, columns=[*KEY, "scheme", "scope", *WEIGHT_COLUMNS])
    if df.duplicated([*KEY, "scheme", "scope"]).any():  # replicates (seeds): their mean
        df = df.groupby([*KEY, "scheme", "scope"], sort=False, as_index=False)[WEIGHT_COLUMNS].mean()
    df = with_scheme_facts(df, schemes)
    df["_s"] = df.scheme.map({s: i for i, s in enumerate(scheme_order(schemes))})
    df = df.sort_values([*KEY, "_s"], kind="stable").drop(columns="_s")
    return df[[*KEY, "scheme", "quantizer", "bits", "scope", *WEIGHT_COLUMNS]].reset_index(drop=True)


def weight_change_summary(wc: pd.DataFrame) -> pd.DataFrame:
    d = wc[wc.scope == "overall"].copy()
    for c in ("frac_codes_changed", "frac_dequant_changed"):
        d[c.replace("frac_", "pct_")] = 100.0 * d[c]
    return d[
        [*KEY, "scheme", "bits", "cosine", "rel_l2", "pct_codes_changed", "pct_dequant_changed", "q_rel_l2"]
    ].reset_index(drop=True)


def table2_3(df: pd.DataFrame, schemes: dict, cfg: ReportConfig) -> pd.DataFrame:
    """Table 1 layout restricted to full precision, GPTQ and AWQ (the paper's Tables 2 and 3)."""
    keep = [cfg.full_precision_scheme] + [
        s for s in scheme_order(schemes) if schemes[s]["quantizer"] in ("gptq", "awq")
    ]
    return table1(df[df.scheme.isin(keep)], keep)


def read_optional_table(path: str | Path | None) -> pd.DataFrame:
    """A table that may be absent or empty (an aggregate_attacks output of a config without attacks)."""
    if path is None or not Path(path).exists():
        return pd.DataFrame()
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def zoo_schemes(schemes: dict, present: set[str], cfg: ReportConfig) -> list[str]:
    """The zoo table's schemes: full precision, the first 8-bit scheme present (most-bits order, then
    quantizer family) and the report's quantized (4-bit) scheme; each only where evaluated."""
    eight = [s for s in scheme_order(schemes) if int(schemes[s]["nominal_bits"]) == 8 and s in present]
    out = [cfg.full_precision_scheme, *eight[:1], cfg.quantized_scheme]
    return [s for s in dict.fromkeys(out) if s in present]


# the zoo table's rows: the headline arms and their deployment modes (frame.DEPLOYMENT)
ZOO_MODELS = ("unlearn", DEPLOYMENT)


def zoo_labels(rows: pd.DataFrame) -> pd.Series:
    """The zoo table's method column: an arm's method; a deployment's, with its mode's label
    (``ihl_fila (quantized base + fp adapter)``; qunlearn.deploy reads the mode from the model id)."""

    def label(r) -> str:
        if r.model != DEPLOYMENT:
            return r.method
        mode = deploy.parse(r.model_id)[0]
        return f"{r.method} ({deploy.MODE_LABELS.get(mode, mode)})"

    return pd.Series([label(r) for r in rows.itertuples()], index=rows.index, dtype=object)


def zoo_table(
    df: pd.DataFrame, wc: pd.DataFrame, robust: pd.DataFrame, schemes: dict, cfg: ReportConfig
) -> pd.DataFrame:
    """The method zoo, one row per headline arm and one per deployment mode of an arm (``df``:
    metrics rows, headline and deployment, seed-averaged; a deployment's row is labelled
    :func:`zoo_labels` and has no changed-code or robust values: it is neither analysed nor attacked):
    retention at full precision, 8 and 4 bits (``retention_<scheme>``), M4 relative to the target at
    full precision (``m4_rel``), the percentage of the quantized scheme's codes that changed
    (``pct_codes_changed_<scheme>``, from the analysis rows ``wc`` as the weight-change table reads
    them) and, when the attack tables have rows for it, robust retention's worst case
    (``robust_worst``, ``robust_worst_at``)."""
    ret = retention(df, models=ZOO_MODELS)
    ret = ret.assign(method=zoo_labels(ret))
    chosen = zoo_schemes(schemes, set(ret.scheme), cfg)
    out = (
        ret[ret.scheme.isin(chosen)]
        .pivot_table(index=KEY, columns="scheme", values="retention", sort=False)
        .reindex(columns=chosen)
        .rename(columns=lambda s: f"retention_{s}")
        .reset_index()
    )
    out.columns.name = None
    m4 = column("knowmem_r")
    wide = wide_metrics(df[df.scheme == cfg.full_precision_scheme], [m4])
    target = wide[wide.model == "target"].set_index("dataset")[m4] if m4 in wide else pd.Series(dtype=float)
    arms = wide[wide.model.isin(ZOO_MODELS)] if m4 in wide else wide
    arms = arms.assign(method=zoo_labels(arms)).set_index(KEY)[m4] if m4 in wide else pd.Series(dtype=float)
    out["m4_rel"] = [
        arms.get(tuple(r[k] for k in KEY), float("nan")) / target.get(r["dataset"], float("nan"))
        if target.get(r["dataset"], 0) > 0
        else float("nan")
        for _, r in out.iterrows()
    ]
    q = cfg.quantized_scheme
    codes = wc[(wc.scope == "overall") & (wc.scheme == q)] if not wc.empty else wc
    codes = codes.set_index(KEY).frac_codes_changed if not codes.empty else pd.Series(dtype=float)
    out[f"pct_codes_changed_{q}"] = [
        100.0 * codes.get(tuple(r[k] for k in KEY), float("nan")) for _, r in out.iterrows()
    ]
    if not robust.empty and "worst" in robust:
        worst = robust.set_index(["dataset", "method"])
        out["robust_worst"] = [worst.worst.get((r.dataset, r.method), float("nan")) for r in out.itertuples()]
        out["robust_worst_at"] = [worst.worst_at.get((r.dataset, r.method), "") for r in out.itertuples()]
    return out.sort_values(["dataset", "method", "alpha", "lr"], kind="stable").reset_index(drop=True)


QA_VARIANTS = ("plain", "SURE", "quantization-aware")  # the qa_comparison's variant column, in row order


def qa_variant(method: str) -> str:
    """A method's variant in the qa_comparison table, from its spec's traits."""
    spec = METHODS[method]
    return "quantization-aware" if spec.quantization_aware else "SURE" if spec.saliency_masked else "plain"


def qa_comparison_table(
    df: pd.DataFrame, robust: pd.DataFrame, schemes: dict, cfg: ReportConfig, qa: dict
) -> pd.DataFrame:
    """Quantization-aware unlearning against SURE and a plain larger lr at equal utility (issue 13):
    one row per arm of ``qa`` (``Experiment.qa_comparison_for_report()``: ``arms`` [[dataset,
    model_id]], ``headline`` the headline arms among them, ``min_utility_fraction``) found in
    ``df`` (metrics rows with the bases, seed-averaged): its objective, method, variant
    (:func:`qa_variant`), alpha and lr; M4 relative to the target at full precision (``m4_rel``) and
    whether it meets the utility floor (``meets_utility``: m4_rel >= min_utility_fraction); retention
    at full precision and at every 4-bit scheme evaluated (``retention_<scheme>``, most-bits order,
    then quantizer family); and, when the attack tables have rows, robust retention's worst case
    (``robust_worst``, ``robust_worst_at``) for the attacked headline arms (empty for the others)."""
    arms = [tuple(a) for a in qa.get("arms", [])]
    headline = {tuple(a) for a in qa.get("headline", [])}
    floor = float(qa.get("min_utility_fraction", math.nan))
    if not arms:
        return pd.DataFrame()
    ret = retention(df)
    ret = ret[pd.Series([(d, m) in set(arms) for d, m in zip(ret.dataset, ret.model_id)], index=ret.index, dtype=bool)]
    fp = cfg.full_precision_scheme
    four = [s for s in scheme_order(schemes) if int(schemes[s]["nominal_bits"]) == 4 and s in set(ret.scheme)]
    chosen = [fp, *four]
    m4 = column("knowmem_r")
    wide = wide_metrics(df[df.scheme == fp], [m4]) if len(df) else pd.DataFrame()
    has_m4 = m4 in wide
    target = wide[wide.model == "target"].set_index("dataset")[m4] if has_m4 else pd.Series(dtype=float)
    m4_of = wide.set_index(["dataset", "model_id"])[m4] if has_m4 else pd.Series(dtype=float)
    with_robust = not robust.empty and "worst" in robust
    worst = robust.set_index(["dataset", "method"]) if with_robust else None
    rows = []
    for ds, mid in arms:
        r = ret[(ret.dataset == ds) & (ret.model_id == mid)]
        if r.empty:
            continue
        first = r.iloc[0]
        t = target.get(ds, math.nan)
        m4_rel = float(m4_of.get((ds, mid), math.nan)) / t if t > 0 else math.nan
        by_scheme = dict(zip(r.scheme, r.retention))
        row = {
            "dataset": ds,
            "objective": METHODS[first.method].objective or first.method,
            "method": first.method,
            "variant": qa_variant(first.method),
            "alpha": first.alpha,
            "lr": first.lr,
            "m4_rel": m4_rel,
            "meets_utility": bool(m4_rel >= floor) if not math.isnan(m4_rel) else False,
            **{f"retention_{s}": float(by_scheme.get(s, math.nan)) for s in chosen},
        }
        if with_robust:
            key, attacked = (ds, first.method), (ds, mid) in headline
            row["robust_worst"] = float(worst.worst.get(key, math.nan)) if attacked else math.nan
            at = worst.worst_at.get(key, "") if attacked else ""
            row["robust_worst_at"] = at if isinstance(at, str) else ""
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = out.assign(_v=out.variant.map(QA_VARIANTS.index), _lr=out.lr.astype(float))
    out = out.sort_values(["dataset", "objective", "_v", "method", "_lr"], kind="stable")
    return out.drop(columns=["_v", "_lr"]).reset_index(drop=True)
