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
from .plan import parse_model_id

METRICS = {  # metric name in metrics.csv -> key in the eval JSON
    "M1_VerbMem_f": "verbmem_f",
    "M2_KnowMem_f": "knowmem_f",
    "M4_KnowMem_r": "knowmem_r",
}
PRIVLEAK = "M3_PrivLeak"
TABLE1_COLUMNS = ["M1_VerbMem_f", "M2_KnowMem_f", PRIVLEAK, "M4_KnowMem_r"]
# A model row: where it lives (model_id), what it is, and the alpha actually used ("selected" in a
# model_id is resolved from the alpha selection; the `selected` column keeps that fact).
MODEL_KEY = ["dataset", "model_id", "model", "method", "alpha", "selected", "lr", "epochs", "loss"]
# headline: the row belongs to the headline tables (Table 1, retention.md, summary, the bar figure)
LONG_COLUMNS = [*MODEL_KEY, "headline", "scheme", "metric", "value"]
RETENTION_COLUMNS = [*MODEL_KEY, "scheme", "retention"]

_EVAL_PATH = re.compile(r"(?:^|/)(?P<dataset>[^/]+)/eval/(?P<model_id>.+)/(?P<scheme>[^/]+)\.json$")


def parse_eval_path(path: str | Path, selected_alphas: dict | None = None) -> dict:
    """Model key + scheme of an eval output; ``selected_alphas[(dataset, method)]`` resolves the
    alpha of arms whose path says alpha~selected."""
    m = _EVAL_PATH.search(str(path).replace("\\", "/"))
    if not m:
        raise ValueError(f"{path}: not an eval output path (results/<dataset>/eval/<model_id>/<scheme>.json)")
    try:
        fields = parse_model_id(m["model_id"])
    except ValueError as err:
        raise ValueError(f"{path}: not an eval output path ({err})") from None
    selected = fields["alpha"] == "selected"
    if selected:
        try:
            fields["alpha"] = f"{(selected_alphas or {})[(m['dataset'], fields['method'])]:g}"
        except KeyError:
            raise ValueError(f"{path}: alpha~selected but no alpha selection for "
                             f"({m['dataset']}, {fields['method']}) was given") from None
    return {"dataset": m["dataset"], "model_id": m["model_id"], "model": fields["model"],
            "method": fields["method"], "alpha": fields["alpha"], "selected": selected,
            "lr": fields["lr"], "epochs": fields["epochs"], "loss": fields["loss"], "scheme": m["scheme"]}


def long_metrics(eval_paths: list[str], cfg: ReportConfig, selected_alphas: dict | None = None) -> pd.DataFrame:
    """One row per (model, scheme, metric); values x100 as MUSE reports them."""
    rows, aucs = [], {}
    for path in eval_paths:
        key = {**parse_eval_path(path, selected_alphas), "headline": True}
        data = runtime.read_json(path)
        for name, k in METRICS.items():
            rows.append({**key, "metric": name, "value": 100.0 * data["metrics"][k]})
        aucs[(key["dataset"], key["model_id"], key["scheme"])] = (key, data["metrics"]["mia_auc"])
        rows.append({**key, "metric": "MIA_AUC", "value": data["metrics"]["mia_auc"]})
    for key, auc in aucs.values():
        ref = aucs.get((key["dataset"], "retrain", cfg.privleak_reference_scheme))
        if ref is None:
            raise ValueError(
                f"PrivLeak of {key}: no eval of the retrain model at scheme "
                f"{cfg.privleak_reference_scheme!r} for dataset {key['dataset']!r}"
            )
        rows.append({**key, "metric": PRIVLEAK, "value": privleak(auc, ref[1])})
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return df.sort_values(["dataset", "model", "method", "model_id", "scheme", "metric"],
                          kind="stable").reset_index(drop=True)


def wide_metrics(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (model, scheme) with a column per metric."""
    return df[df.metric.isin(metrics)].pivot_table(
        index=[*MODEL_KEY, "scheme"], columns="metric", values="value"
    ).reset_index()


def retention(df: pd.DataFrame) -> pd.DataFrame:
    """Per unlearned model and scheme: mean over M1 and M2 of unlearned / target at the same scheme."""
    wide = wide_metrics(df, ["M1_VerbMem_f", "M2_KnowMem_f"])
    target = wide[wide.model == "target"].set_index(["dataset", "scheme"])
    rows = []
    for _, r in wide[wide.model == "unlearn"].iterrows():
        t = target.loc[(r.dataset, r.scheme)]
        ratios = [r[m] / t[m] if t[m] > 0 else math.nan for m in ("M1_VerbMem_f", "M2_KnowMem_f")]
        rows.append({**{k: r[k] for k in MODEL_KEY}, "scheme": r.scheme, "retention": float(np.mean(ratios))})
    return pd.DataFrame(rows, columns=RETENTION_COLUMNS)


def headline(df: pd.DataFrame, headline_ids: dict[str, list[str]]) -> pd.DataFrame:
    """The rows the headline tables report: target, retrain and each dataset's headline arms."""
    keep = [mid in ("target", "retrain") or mid in headline_ids.get(ds, ())
            for ds, mid in zip(df.dataset, df.model_id)]
    return df[keep].reset_index(drop=True)


def _model_label(row) -> str:
    if row.model != "unlearn":
        return row.model.capitalize()
    star = "*" if row.selected else ""
    return f"{row.method.upper()} (alpha={row.alpha}{star}, lr={row.lr})"


def table1(df: pd.DataFrame, scheme_order: list[str]) -> pd.DataFrame:
    """Rows model x scheme, columns M1-M4 (Table 1 of the paper)."""
    wide = wide_metrics(df, TABLE1_COLUMNS)
    order = {"target": 0, "retrain": 1, "unlearn": 2}
    wide["_m"] = wide.model.map(order)
    wide["_s"] = wide.scheme.map({s: i for i, s in enumerate(scheme_order)})
    wide = wide.sort_values(["dataset", "_m", "method", "model_id", "_s"], kind="stable")
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
            "mean_retention_sure": {
                s: float(g.retention.mean())
                for s, g in ret[(ret.dataset == ds) & ret.method.str.endswith("_sure")].groupby("scheme")
            },
            "alpha": {m: float(a) for m, a in
                      ret[ret.dataset == ds].drop_duplicates("method").set_index("method").alpha.items()},
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
            r.model if r.model != "unlearn" else f"{r.method}\n(a={r.alpha}{'*' if r.selected else ''}, lr={r.lr})"
            for r in d.itertuples()
        ]
        d["_order"] = d.model.map({"target": 0, "retrain": 1, "unlearn": 2})
        labels = list(dict.fromkeys(d.sort_values(["_order", "method", "model_id"], kind="stable").label))
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
    text_cols = {c: str for c in LONG_COLUMNS if c not in ("value", "selected", "headline")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=False)
    for col in ("selected", "headline"):
        df[col] = df[col].astype(str) == "True"
    return df


def figures_from_metrics(metrics_csv: str | Path, plot_cfg: dict, figures: list[str],
                         lr_sweep_csv: str | Path | None = None) -> None:
    """The figures of rule ``figures``, drawn from metrics.csv (headline rows) and the lr-sweep table
    with only the plot settings, so a plotting option (``report.figure_dpi``) reruns the figures and
    nothing else."""
    cfg = from_dict(ReportConfig, plot_cfg, "report")
    out = {Path(p).name: p for p in figures}
    df = read_metrics(metrics_csv)
    figure(df[df.headline], cfg, out["m1_m2_by_scheme.png"], out["m1_m2_by_scheme.pdf"])
    if "lr_sweep.png" in out:
        from .report_studies import lr_figure

        try:
            table = pd.read_csv(lr_sweep_csv, dtype={"lr": str, "dataset": str, "method": str})
        except (pd.errors.EmptyDataError, ValueError, TypeError):  # no lr sweep in this config
            table = pd.DataFrame()
        t = df[(df.model == "target") & (df.scheme == cfg.full_precision_scheme) & (df.metric == "M4_KnowMem_r")]
        lr_figure(table, cfg, dict(zip(t.dataset, t.value)), out["lr_sweep.png"], out["lr_sweep.pdf"])


def aggregate(eval_paths: list[str], report_cfg: dict, tables: list[str],
              selections: dict[str, str] | None = None, headline_ids: dict[str, list[str]] | None = None,
              studies: dict | None = None) -> None:
    """Every table (the figures are rule ``figures``). ``selections``: "dataset/method" -> selection
    JSON (resolves alpha~selected); ``headline_ids``: dataset -> the model_ids the headline tables
    report (every unlearned model when None); ``studies``: study -> {"arms": [[dataset, model_id]],
    "schemes": [...]} (report_studies)."""
    from .selection import selected_alpha

    cfg = from_dict(ReportConfig, report_cfg, "report")
    selected_alphas = {tuple(k.split("/", 1)): selected_alpha(p) for k, p in (selections or {}).items()}
    df = long_metrics(eval_paths, cfg, selected_alphas)
    if headline_ids is not None:
        df["headline"] = [mid in ("target", "retrain") or mid in headline_ids.get(ds, ())
                          for ds, mid in zip(df.dataset, df.model_id)]
    ret = retention(df)
    head_ids = set(zip(df[df.headline].dataset, df[df.headline].model_id))
    ret.insert(len(MODEL_KEY), "headline", [(d, m) in head_ids for d, m in zip(ret.dataset, ret.model_id)])
    head = df[df.headline].reset_index(drop=True)
    head_ret = headline(ret, headline_ids) if headline_ids is not None else ret
    schemes = list(dict.fromkeys([*cfg.figure_schemes, *sorted(df.scheme.unique())]))
    t1 = table1(head, schemes)
    out = {Path(p).name: p for p in tables}
    df.to_csv(out["metrics.csv"], index=False, float_format="%.6g")
    t1.to_csv(out["table1.csv"], index=False, float_format="%.4g")
    Path(out["table1.md"]).write_text(to_markdown(t1))
    Path(out["table1.tex"]).write_text(to_latex(
        t1, "MUSE metrics (x100) per model and quantization scheme (Table 1 analog; * = alpha selected "
            "by the grid rule).", "tab:table1"))
    ret.to_csv(out["retention.csv"], index=False, float_format="%.6g")
    ret_wide = head_ret.pivot_table(index=["dataset", "method", "alpha", "lr"], columns="scheme",
                                    values="retention").reset_index()
    ret_wide = ret_wide[[c for c in ret_wide.columns if c not in schemes] + [s for s in schemes if s in ret_wide]]
    Path(out["retention.md"]).write_text(to_markdown(ret_wide, "{:.2f}"))
    Path(out["retention.tex"]).write_text(to_latex(
        ret_wide, "Knowledge retention (unlearned / target at the same scheme, mean of M1 and M2).",
        "tab:retention", "{:.2f}"))
    runtime.write_json_atomic(out["summary.json"], summary(head, head_ret, cfg))
    if studies is not None:
        from .report_studies import write_studies

        write_studies(df, ret, cfg, studies, selections or {}, out)
