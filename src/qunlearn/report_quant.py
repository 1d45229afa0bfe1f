"""Quantizer reports: the GPTQ/AWQ table (paper Tables 2/3), retention per scheme and bits (the
plot the reviewers asked for, as a table and a figure), and the weight-change table and figure
(the rebuttal's cosine similarity and changed-code fraction).

Reads metrics.csv (rule ``aggregate``: the headline rows, with alphas resolved from the selections;
the same metrics and retention definition as Table 1) and the analysis JSONs of rule ``analysis``; scheme facts (quantizer, bits) come from the config
(``plan.scheme_table``), never from the scheme's name.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import report, runtime
from .config import ReportConfig, from_dict

WEIGHT_COLUMNS = ["n_weights", "cosine", "rel_l2", "frac_fp_changed", "frac_codes_changed",
                  "frac_dequant_changed", "q_cosine", "q_rel_l2"]
KEY = ["dataset", "method", "alpha", "lr"]
MEAN_LABEL = "mean (utility-constrained)"


def parse_analysis_path(path: str | Path, models: pd.DataFrame | None = None) -> dict:
    """Same grammar as the eval path, under analysis/ instead of eval/. ``models`` (metrics rows)
    resolves an alpha~selected model's alpha."""
    p = str(path).replace("\\", "/")
    if "/analysis/" not in p:
        raise ValueError(f"{path}: not an analysis output path (results/<dataset>/analysis/<model_id>/<scheme>.json)")
    eval_path = p.replace("/analysis/", "/eval/")
    if models is None:
        return report.parse_eval_path(eval_path)
    m = report._EVAL_PATH.search(eval_path)
    rows = models[(models.dataset == m["dataset"]) & (models.model_id == m["model_id"])] if m else models[:0]
    if rows.empty:
        raise ValueError(f"{path}: no evaluated model {m['model_id'] if m else p!r} in metrics.csv")
    return {**rows.iloc[0][report.MODEL_KEY].to_dict(), "scheme": m["scheme"]}


QUANTIZER_ORDER = ["none", "cast", "rtn", "bnb_int8", "bnb_fp4", "bnb_nf4", "gptq", "awq"]


def scheme_order(schemes: dict) -> list[str]:
    """Schemes from most to fewest bits, then by quantizer family (the params' JSON is key-sorted,
    so the config's order is not available here)."""
    def key(name):
        q = schemes[name]["quantizer"]
        rank = QUANTIZER_ORDER.index(q) if q in QUANTIZER_ORDER else len(QUANTIZER_ORDER)
        return (-int(schemes[name]["nominal_bits"]), rank, name)

    return sorted(schemes, key=key)


def _bits_columns(df: pd.DataFrame, schemes: dict) -> pd.DataFrame:
    df = df.copy()
    df["quantizer"] = [schemes[s]["quantizer"] for s in df.scheme]
    df["bits"] = [int(schemes[s]["nominal_bits"]) for s in df.scheme]
    return df


def retention_by_bits(ret: pd.DataFrame, schemes: dict, cfg: ReportConfig) -> pd.DataFrame:
    """Retention per (dataset, method, scheme) with the scheme's quantizer and bits, plus the mean
    of the utility-constrained methods as method ``MEAN_LABEL``."""
    means = (ret[ret.method.isin(cfg.utility_constrained)].groupby(["dataset", "scheme"], as_index=False)
             .retention.mean())
    means = means.assign(method=MEAN_LABEL, alpha="", lr="")
    ret = ret[["dataset", "method", "alpha", "lr", "scheme", "retention"]]
    out = pd.concat([ret, means[ret.columns]], ignore_index=True)
    out = _bits_columns(out, schemes)
    order = {s: i for i, s in enumerate(scheme_order(schemes))}
    out["_s"] = out.scheme.map(order)
    out["_m"] = (out.method == MEAN_LABEL).astype(int)
    out = out.sort_values(["dataset", "_m", "method", "alpha", "lr", "_s"], kind="stable")
    return out[["dataset", "method", "alpha", "lr", "scheme", "quantizer", "bits", "retention"]].reset_index(drop=True)


def _method_labels(df: pd.DataFrame) -> pd.Series:
    """``method`` where a dataset has one (alpha, lr) of it, else ``method (a=.., lr=..)``."""
    counts = df.groupby(["dataset", "method"])[["alpha", "lr"]].apply(lambda g: len(g.drop_duplicates()))
    return pd.Series([r.method if counts[(r.dataset, r.method)] == 1 or r.method == MEAN_LABEL
                      else f"{r.method} (a={r.alpha}, lr={r.lr})" for r in df.itertuples()], index=df.index)


def retention_wide(rb: pd.DataFrame, schemes: dict) -> pd.DataFrame:
    """Rows dataset x scheme (with quantizer and bits), one column per method."""
    d = rb.assign(label=_method_labels(rb))
    wide = d.pivot_table(index=["dataset", "scheme", "quantizer", "bits"], columns="label",
                         values="retention", sort=False).reset_index()
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order(schemes))})
    wide = wide.sort_values(["dataset", "_s"], kind="stable").drop(columns="_s")
    labels = [c for c in dict.fromkeys(d.label) if c != MEAN_LABEL] + [MEAN_LABEL]
    wide.columns.name = None
    return wide[["dataset", "scheme", "quantizer", "bits", *[c for c in labels if c in wide]]].reset_index(drop=True)


def analysis_files(paths: list[str]) -> list[str]:
    """The per-scheme JSONs of the analysis outputs (directories, one per unlearned model)."""
    out = []
    for p in map(Path, paths):
        out += sorted(str(f) for f in p.glob("*.json")) if p.is_dir() else [str(p)]
    return out


def weight_change_long(analysis_paths: list[str], schemes: dict, models: pd.DataFrame | None = None) -> pd.DataFrame:
    rows = []
    for path in analysis_files(analysis_paths):
        key = parse_analysis_path(path, models)
        data = runtime.read_json(path)
        base = {k: key[k] for k in (*KEY, "scheme")}
        rows.append({**base, "scope": "overall", **{c: data["overall"][c] for c in WEIGHT_COLUMNS}})
        for group, prefix in (("by_module", "module"), ("by_layer", "layer")):
            for name, vals in data[group].items():
                rows.append({**base, "scope": f"{prefix}:{name}", **{c: vals[c] for c in WEIGHT_COLUMNS}})
    df = _bits_columns(pd.DataFrame(rows, columns=[*KEY, "scheme", "scope", *WEIGHT_COLUMNS]), schemes)
    order = {s: i for i, s in enumerate(scheme_order(schemes))}
    df["_s"] = df.scheme.map(order)
    df = df.sort_values([*KEY, "_s"], kind="stable").drop(columns="_s")
    return df[[*KEY, "scheme", "quantizer", "bits", "scope", *WEIGHT_COLUMNS]].reset_index(drop=True)


def weight_change_summary(wc: pd.DataFrame) -> pd.DataFrame:
    d = wc[wc.scope == "overall"].copy()
    for c in ("frac_codes_changed", "frac_dequant_changed"):
        d[c.replace("frac_", "pct_")] = 100.0 * d[c]
    return d[[*KEY, "scheme", "bits", "cosine", "rel_l2", "pct_codes_changed", "pct_dequant_changed",
              "q_rel_l2"]].reset_index(drop=True)


def table2_3(df: pd.DataFrame, schemes: dict, cfg: ReportConfig) -> pd.DataFrame:
    """Table 1 layout restricted to full precision, GPTQ and AWQ (the paper's Tables 2 and 3)."""
    keep = [cfg.full_precision_scheme] + [s for s in scheme_order(schemes) if schemes[s]["quantizer"] in ("gptq", "awq")]
    sub = df[df.scheme.isin(keep)]
    return report.table1(sub, keep)


def _panels(datasets_methods: dict[str, list[str]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(datasets_methods)
    n_cols = max(len(m) for m in datasets_methods.values())
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.7 * n_cols, 2.6 * n_rows), squeeze=False,
                             sharey=True)
    return plt, fig, axes


X_BITS = [32, 16, 8, 4, 3, 2]
MARKERS = {"cast": "s", "bnb_int8": "^", "bnb_fp4": "v", "bnb_nf4": "<", "gptq": "D", "awq": "P", "rtn": "o",
           "none": "o"}


def _group_label(g) -> str:
    if g is None or (isinstance(g, float) and math.isnan(g)) or g == 0:
        return "per channel"
    return f"g{int(g)}"


def _xpos(bits: int) -> float:
    return float(X_BITS.index(bits)) if bits in X_BITS else float(np.interp(bits, [2, 32], [5, 0]))


def bits_figure(d: pd.DataFrame, value: str, ylabel: str, png, pdf, dpi: int, fp_in_line: bool,
                symlog: bool = False) -> None:
    """One panel per (dataset, method): RTN schemes as lines over bits (one per group size),
    every other scheme as a marker at its bits (offset sideways so the 4-bit points do not overlap)."""
    datasets = sorted(d.dataset.unique())
    methods = {ds: list(dict.fromkeys(d[d.dataset == ds].sort_values("method").label)) for ds in datasets}
    for ds in datasets:
        if MEAN_LABEL in methods[ds]:
            methods[ds] = [m for m in methods[ds] if m != MEAN_LABEL] + [MEAN_LABEL]
    plt, fig, axes = _panels(methods)
    # one colour and one sideways offset per scheme (or RTN group size) across all panels
    rtn_groups = sorted(set(d[d.quantizer == "rtn"].group_size.map(_group_label)))
    marker_schemes = list(dict.fromkeys(d[~d.quantizer.isin(["rtn", "none"])].sort_values("_order").scheme))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [f"RTN {g}" for g in rtn_groups] + marker_schemes
    colours = {n: palette[i % len(palette)] for i, n in enumerate(names)}
    offsets = {}
    for bits in set(d.bits):
        same = [s for s in marker_schemes if int(d[d.scheme == s].bits.iloc[0]) == bits]
        for i, s in enumerate(same):
            offsets[s] = 0.12 * (i - (len(same) - 1) / 2)
    for i, ds in enumerate(datasets):
        for j in range(axes.shape[1]):
            ax = axes[i][j]
            if j >= len(methods[ds]):
                ax.axis("off")
                continue
            label = methods[ds][j]
            sub = d[(d.dataset == ds) & (d.label == label)]
            rtn = sub[sub.quantizer == "rtn"]
            fp = sub[sub.quantizer == "none"]
            for g, grp in rtn.groupby(rtn.group_size.map(_group_label), sort=True):
                pts = pd.concat([fp, grp]) if fp_in_line else grp
                pts = pts.sort_values("bits", ascending=False)
                ax.plot([_xpos(b) for b in pts.bits], pts[value], "-o", ms=3, lw=1.2, color=colours[f"RTN {g}"],
                        label=f"RTN {g}")
            others = sub[~sub.quantizer.isin(["rtn", "none"])]
            for r in others.itertuples():
                ax.plot(_xpos(r.bits) + offsets[r.scheme], getattr(r, value), MARKERS.get(r.quantizer, "x"),
                        ms=5, color=colours[r.scheme], label=r.scheme, linestyle="none")
            ax.set_xticks(range(len(X_BITS)))
            ax.set_xticklabels(["fp32" if b == 32 else str(b) for b in X_BITS], fontsize=7)
            ax.set_title(f"{ds}: {label}", fontsize=7)
            if symlog:
                ax.set_yscale("symlog", linthresh=0.1)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=7)
            ax.set_xlabel("bits", fontsize=7)
            ax.tick_params(labelsize=7)
    handles = {}
    for ax in axes.flat:
        for h, lb in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lb, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(8, len(handles)), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(png, dpi=dpi)
    fig.savefig(pdf)
    plt.close(fig)


def _with_group_size(df: pd.DataFrame, schemes: dict) -> pd.DataFrame:
    return df.assign(group_size=[schemes[s].get("group_size") for s in df.scheme])


def aggregate_quant(metrics_csv: str | Path, analysis_paths: list[str], report_cfg: dict, schemes: dict,
                    tables: list[str], figures: list[str]) -> None:
    cfg = from_dict(ReportConfig, report_cfg, "report")
    out = {Path(p).name: p for p in tables + figures}
    df = report.read_metrics(metrics_csv)
    df = df[df.headline].reset_index(drop=True)  # the methods' reported arms (grid/sweeps: study tables)
    missing = sorted(set(df.scheme) - set(schemes))
    if missing:
        raise ValueError(f"eval outputs for schemes not in quantize.schemes: {missing}")

    t23 = table2_3(df, schemes, cfg)
    t23.to_csv(out["table2_3_gptq_awq.csv"], index=False, float_format="%.4g")
    Path(out["table2_3_gptq_awq.md"]).write_text(report.to_markdown(t23))
    Path(out["table2_3_gptq_awq.tex"]).write_text(report.to_latex(
        t23, "MUSE metrics (x100) at full precision and after 4-bit GPTQ and AWQ (Tables 2/3 analog).",
        "tab:gptq_awq"))

    rb = retention_by_bits(report.retention(df), schemes, cfg)
    rb.to_csv(out["retention_by_bits.csv"], index=False, float_format="%.6g")
    rw = retention_wide(rb, schemes)
    Path(out["retention_by_bits.md"]).write_text(report.to_markdown(rw, "{:.2f}"))
    Path(out["retention_by_bits.tex"]).write_text(report.to_latex(
        rw, "Knowledge retention (unlearned / target at the same scheme, mean of M1 and M2) per scheme "
            "and bits.", "tab:retention_bits", "{:.2f}"))

    wc = weight_change_long(analysis_paths, schemes, df)
    wc.to_csv(out["weight_change.csv"], index=False, float_format="%.6g")
    ws = weight_change_summary(wc)
    Path(out["weight_change.md"]).write_text(report.to_markdown(ws, "{:.3f}"))
    Path(out["weight_change.tex"]).write_text(report.to_latex(
        ws, "Weight change of each unlearned model against its released target: cosine similarity, "
            "relative L2, and the percentage of quantized codes (and deployed weights) that differ.",
        "tab:weight_change", "{:.3f}"))

    order = {s: i for i, s in enumerate(scheme_order(schemes))}
    rbf = _with_group_size(rb.assign(label=_method_labels(rb), _order=rb.scheme.map(order)), schemes)
    bits_figure(rbf, "retention", "retention", out["retention_vs_bits.png"], out["retention_vs_bits.pdf"],
                cfg.figure_dpi, fp_in_line=True)
    wco = wc[wc.scope == "overall"]
    wco = _with_group_size(wco.assign(label=_method_labels(wco), pct=100.0 * wco.frac_codes_changed,
                                      _order=wco.scheme.map(order)), schemes)
    bits_figure(wco[wco.quantizer != "none"], "pct", "% codes changed", out["codes_changed_vs_bits.png"],
                out["codes_changed_vs_bits.pdf"], cfg.figure_dpi, fp_in_line=False, symlog=True)
