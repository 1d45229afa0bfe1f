"""Aggregation: eval JSONs -> metrics.csv, Table-1-style tables, retention, summary, figure."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import runtime
from .config import ReportConfig, from_dict
from .evaluate.metrics import privleak

METRICS = {  # metric name in metrics.csv -> key in the eval JSON
    "M1_VerbMem_f": "verbmem_f",
    "M2_KnowMem_f": "knowmem_f",
    "M4_KnowMem_r": "knowmem_r",
}
PRIVLEAK = "M3_PrivLeak"
TABLE1_COLUMNS = ["M1_VerbMem_f", "M2_KnowMem_f", PRIVLEAK, "M4_KnowMem_r"]
LONG_COLUMNS = ["dataset", "model", "method", "alpha", "lr", "scheme", "metric", "value"]
RETENTION_COLUMNS = ["dataset", "method", "alpha", "lr", "scheme", "retention"]

_EVAL_PATH = re.compile(
    r"(?:^|/)(?P<dataset>[^/]+)/eval/(?:(?P<base>target|retrain)|unlearn/(?P<method>[^/]+)/"
    r"alpha~(?P<alpha>[^/]+)/lr~(?P<lr>[^/]+))/(?P<scheme>[^/]+)\.json$"
)


def parse_eval_path(path: str | Path) -> dict:
    m = _EVAL_PATH.search(str(path).replace("\\", "/"))
    if not m:
        raise ValueError(f"{path}: not an eval output path (results/<dataset>/eval/<model_id>/<scheme>.json)")
    d = m.groupdict()
    return {
        "dataset": d["dataset"],
        "model": d["base"] or "unlearn",
        "method": d["method"] or "",
        "alpha": d["alpha"] or "",
        "lr": d["lr"] or "",
        "scheme": d["scheme"],
    }


def long_metrics(eval_paths: list[str], cfg: ReportConfig) -> pd.DataFrame:
    """One row per (model, scheme, metric); values x100 as MUSE reports them."""
    rows, aucs = [], {}
    for path in eval_paths:
        key = parse_eval_path(path)
        data = runtime.read_json(path)
        for name, k in METRICS.items():
            rows.append({**key, "metric": name, "value": 100.0 * data["metrics"][k]})
        aucs[tuple(key.values())] = data["metrics"]["mia_auc"]
        rows.append({**key, "metric": "MIA_AUC", "value": data["metrics"]["mia_auc"]})
    for k, auc in aucs.items():
        key = dict(zip(("dataset", "model", "method", "alpha", "lr", "scheme"), k))
        ref = (key["dataset"], "retrain", "", "", "", cfg.privleak_reference_scheme)
        if ref not in aucs:
            raise ValueError(
                f"PrivLeak of {key}: no eval of the retrain model at scheme "
                f"{cfg.privleak_reference_scheme!r} for dataset {key['dataset']!r}"
            )
        rows.append({**key, "metric": PRIVLEAK, "value": privleak(auc, aucs[ref])})
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return df.sort_values(["dataset", "model", "method", "alpha", "lr", "scheme", "metric"],
                          kind="stable").reset_index(drop=True)


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """Per unlearned model and scheme: mean over M1 and M2 of unlearned / target at the same scheme."""
    wide = df[df.metric.isin(["M1_VerbMem_f", "M2_KnowMem_f"])].pivot_table(
        index=["dataset", "model", "method", "alpha", "lr", "scheme"], columns="metric", values="value"
    ).reset_index()
    target = wide[wide.model == "target"].set_index(["dataset", "scheme"])
    rows = []
    for _, r in wide[wide.model == "unlearn"].iterrows():
        t = target.loc[(r.dataset, r.scheme)]
        ratios = [r[m] / t[m] if t[m] > 0 else math.nan for m in ("M1_VerbMem_f", "M2_KnowMem_f")]
        rows.append({"dataset": r.dataset, "method": r.method, "alpha": r.alpha, "lr": r.lr,
                     "scheme": r.scheme, "retention": float(np.mean(ratios))})
    return pd.DataFrame(rows, columns=RETENTION_COLUMNS)


def _model_label(row) -> str:
    if row.model != "unlearn":
        return row.model.capitalize()
    return f"{row.method.upper()} (alpha={row.alpha}, lr={row.lr})"


def table1(df: pd.DataFrame, scheme_order: list[str]) -> pd.DataFrame:
    """Rows model x scheme, columns M1-M4 (Table 1 of the paper)."""
    wide = df[df.metric.isin(TABLE1_COLUMNS)].pivot_table(
        index=["dataset", "model", "method", "alpha", "lr", "scheme"], columns="metric", values="value"
    ).reset_index()
    order = {"target": 0, "retrain": 1, "unlearn": 2}
    wide["_m"] = wide.model.map(order)
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order)})
    wide = wide.sort_values(["dataset", "_m", "method", "alpha", "lr", "_s"], kind="stable")
    wide.insert(1, "row", [_model_label(r) for r in wide.itertuples()])
    return wide[["dataset", "row", "scheme", *TABLE1_COLUMNS]].reset_index(drop=True)


def to_latex(df: pd.DataFrame, caption: str, label: str, floatfmt: str = "{:.1f}") -> str:
    def cell(v):
        if isinstance(v, float):
            return "--" if math.isnan(v) else floatfmt.format(v)
        return str(v).replace("_", r"\_").replace("~", r"\textasciitilde{}")

    cols = "l" * sum(df.dtypes == object) + "r" * sum(df.dtypes != object)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(cell(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_markdown(df: pd.DataFrame, floatfmt: str = "{:.1f}") -> str:
    """Markdown with floats formatted here and no re-parsing of text cells (keeps lr '3e-05')."""
    cells = df.copy()
    for col in cells.columns:
        if cells[col].dtype.kind == "f":
            cells[col] = [("--" if math.isnan(v) else floatfmt.format(v)) for v in cells[col]]
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"


def summary(df: pd.DataFrame, ret: pd.DataFrame, cfg: ReportConfig) -> dict:
    """Headline numbers per dataset: mean retention of the utility-constrained methods per scheme,
    and the target's own M2 kept at each scheme relative to full precision."""
    out = {}
    for ds in sorted(df.dataset.unique()):
        r = ret[(ret.dataset == ds) & ret.method.isin(cfg.utility_constrained)]
        t = df[(df.dataset == ds) & (df.model == "target") & (df.metric == "M2_KnowMem_f")].set_index("scheme")
        fp = t.value.get(cfg.full_precision_scheme, math.nan)
        out[ds] = {
            "mean_retention_utility_constrained": {
                s: float(g.retention.mean()) for s, g in r.groupby("scheme")
            },
            "target_m2_relative_to_full_precision": {
                s: (float(v / fp) if fp > 0 else math.nan) for s, v in t.value.items()
            },
            "methods": sorted(r.method.unique().tolist()),
        }
    return out


def figure(df: pd.DataFrame, cfg: ReportConfig, png: str | Path, pdf: str | Path) -> None:
    """M1 and M2 per method (plus target and retrain) at each of the figure's schemes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(df.dataset.unique())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.6 * len(datasets)), squeeze=False)
    schemes = [s for s in cfg.figure_schemes if s in set(df.scheme)]
    for i, ds in enumerate(datasets):
        d = df[df.dataset == ds].copy()
        d["label"] = [
            r.model if r.model != "unlearn" else f"{r.method}\n(a={r.alpha}, lr={r.lr})" for r in d.itertuples()
        ]
        d["_order"] = d.model.map({"target": 0, "retrain": 1, "unlearn": 2})
        labels = list(dict.fromkeys(d.sort_values(["_order", "method", "alpha", "lr"], kind="stable").label))
        for j, metric in enumerate(("M1_VerbMem_f", "M2_KnowMem_f")):
            ax = axes[i][j]
            width = 0.8 / max(1, len(schemes))
            x = np.arange(len(labels))
            for k, s in enumerate(schemes):
                vals = d[(d.metric == metric) & (d.scheme == s)].set_index("label").value
                ax.bar(x + k * width - 0.4 + width / 2, [vals.get(lb, np.nan) for lb in labels], width, label=s)
            ax.set_xticks(x)
            ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
            ax.set_ylim(0, 118)
            ax.set_title(f"{ds}: {metric.replace('_', ' ')}")
            ax.set_ylabel("score (x100)")
            ax.legend(fontsize=7, ncol=len(schemes), loc="upper center", frameon=False)
    fig.tight_layout()
    fig.savefig(png, dpi=cfg.figure_dpi)
    fig.savefig(pdf)
    plt.close(fig)


def read_metrics(path: str | Path) -> pd.DataFrame:
    """metrics.csv back as ``long_metrics`` wrote it (alpha and lr stay text: '3e-05', not 3e-05)."""
    text_cols = {c: str for c in LONG_COLUMNS if c != "value"}
    return pd.read_csv(path, dtype=text_cols, keep_default_na=False)


def figures_from_metrics(metrics_csv: str | Path, plot_cfg: dict, figures: list[str]) -> None:
    """The figures of rule ``figures``, drawn from metrics.csv with only the plot settings, so a
    plotting option (``report.figure_dpi``) reruns the figures and nothing else."""
    cfg = from_dict(ReportConfig, plot_cfg, "report")
    out = {Path(p).name: p for p in figures}
    figure(read_metrics(metrics_csv), cfg, out["m1_m2_by_scheme.png"], out["m1_m2_by_scheme.pdf"])


def aggregate(eval_paths: list[str], report_cfg: dict, tables: list[str],
              figures: list[str] | None = None) -> None:
    cfg = from_dict(ReportConfig, report_cfg, "report")
    df = long_metrics(eval_paths, cfg)
    ret = retention(df)
    schemes = list(dict.fromkeys([*cfg.figure_schemes, *sorted(df.scheme.unique())]))
    t1 = table1(df, schemes)
    out = {Path(p).name: p for p in [*tables, *(figures or [])]}
    df.to_csv(out["metrics.csv"], index=False, float_format="%.6g")
    t1.to_csv(out["table1.csv"], index=False, float_format="%.4g")
    Path(out["table1.md"]).write_text(to_markdown(t1))
    Path(out["table1.tex"]).write_text(to_latex(
        t1, "MUSE metrics (x100) per model and quantization scheme (Table 1 analog).", "tab:table1"))
    ret.to_csv(out["retention.csv"], index=False, float_format="%.6g")
    ret_wide = ret.pivot_table(index=["dataset", "method", "alpha", "lr"], columns="scheme",
                               values="retention").reset_index()
    ret_wide = ret_wide[[c for c in ret_wide.columns if c not in schemes] + [s for s in schemes if s in ret_wide]]
    Path(out["retention.md"]).write_text(to_markdown(ret_wide, "{:.2f}"))
    Path(out["retention.tex"]).write_text(to_latex(
        ret_wide, "Knowledge retention (unlearned / target at the same scheme, mean of M1 and M2).",
        "tab:retention", "{:.2f}"))
    runtime.write_json_atomic(out["summary.json"], summary(df, ret, cfg))
    if figures:  # the workflow draws them in rule `figures` (figures_from_metrics)
        figure(df, cfg, out["m1_m2_by_scheme.png"], out["m1_m2_by_scheme.pdf"])
