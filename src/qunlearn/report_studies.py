"""Tables and the figure of the studies around the headline arms (paper section 6, Tables 3-4 and
the rebuttal's ablations): the alpha grid with the selected alpha marked, SURE vs its objective,
the lr sweep, the epoch ablation and the loss variants."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from . import runtime
from .config import ReportConfig
from .plan import is_saliency_method, base_objective
from .report import to_latex, to_markdown, wide_metrics

METRIC_SHORT = {"M1_VerbMem_f": "M1", "M2_KnowMem_f": "M2", "M4_KnowMem_r": "M4"}

# output stem -> (caption, the column(s) the study varies)
STUDY_TABLES = {
    "table4_alpha_grid": ("Alpha grid per method (Table 4 analog): M1, M2, M4 (x100) and retention per "
                          "scheme; * marks the alpha the selection rule picked.", "alpha_grid"),
    "table3_sure": ("SURE vs its objective (Table 3 analog): metrics (x100) and retention at full "
                    "precision and the quantized scheme.", None),
    "lr_sweep": ("Learning-rate sweep with and without SURE: metrics (x100) and retention.", "lr"),
    "epochs_ablation": ("Epoch ablation (rebuttal table analog): 1 vs N epochs.", "epochs"),
    "loss_variants": ("Loss variants: faithful (sequence log-likelihoods, log-softmax KL) vs the paper "
                      "code (raw logits).", "loss_variant"),
}
STUDY_VARY = {"alpha_grid": ["alpha"], "lr": ["lr"], "epochs": ["epochs"], "loss_variant": ["loss"]}


def study_table(df: pd.DataFrame, ret: pd.DataFrame, arms: list[tuple[str, str]], vary: list[str],
                schemes: list[str]) -> pd.DataFrame:
    """One row per arm: dataset, method, the varied columns, then M1/M2/M4 and retention per scheme."""
    ids = {tuple(a) for a in arms}
    pick = lambda d: d[[(ds, mid) in ids for ds, mid in zip(d.dataset, d.model_id)]]  # noqa: E731
    wide = wide_metrics(pick(df), list(METRIC_SHORT))
    r = pick(ret)
    rows = []
    for (ds, mid), g in wide.groupby(["dataset", "model_id"], sort=False):
        first = g.iloc[0]
        row = {"dataset": ds, "method": first.method, **{v: first[v] for v in vary}}
        for s in schemes:
            gs = g[g.scheme == s]
            for m, short in METRIC_SHORT.items():
                row[f"{s} {short}"] = float(gs[m].iloc[0]) if len(gs) else math.nan
            rs = r[(r.dataset == ds) & (r.model_id == mid) & (r.scheme == s)].retention
            row[f"{s} ret"] = float(rs.iloc[0]) if len(rs) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    sort = ["dataset", "method", *vary]
    numeric = {v: out[v].astype(float) for v in vary if v in ("alpha", "lr", "epochs")}
    out = out.assign(**{f"_{k}": v for k, v in numeric.items()})
    out = out.sort_values([f"_{v}" if v in numeric else v for v in sort], kind="stable")
    return out.drop(columns=[f"_{k}" for k in numeric]).reset_index(drop=True)


def _write(stem: str, table: pd.DataFrame, out: dict, caption: str) -> None:
    table.to_csv(out[f"{stem}.csv"], index=False, float_format="%.6g")
    Path(out[f"{stem}.md"]).write_text(to_markdown(table, "{:.2f}") if not table.empty else "(no rows)\n")
    Path(out[f"{stem}.tex"]).write_text(to_latex(table, caption, f"tab:{stem}", "{:.2f}") if not table.empty
                                        else f"% {stem}: no rows in this config\n")


def alpha_grid_table(df, ret, arms, schemes, selections: dict[str, str]) -> pd.DataFrame:
    table = study_table(df, ret, arms, ["alpha"], schemes)
    if table.empty:
        return table
    chosen = {}
    for key, path in selections.items():
        ds, method = key.split("/", 1)
        sel = runtime.read_json(path)
        chosen[(ds, method)] = (float(sel["alpha"]), {float(g["alpha"]): g["meets_utility"] for g in sel["grid"]})
    table["meets_utility"] = [chosen.get((r.dataset, r.method), (None, {}))[1].get(float(r.alpha))
                              for r in table.itertuples()]
    table["selected"] = ["*" if chosen.get((r.dataset, r.method), (None,))[0] == float(r.alpha) else ""
                         for r in table.itertuples()]
    return table


def sure_table(df, ret, cfg: ReportConfig, headline_ids: list[tuple[str, str]]) -> pd.DataFrame:
    """Headline arms of SURE methods beside the headline arms of their objectives."""
    sure = {m for ds, mid in headline_ids for m in [mid.split("/")[1]] if is_saliency_method(m)}
    keep = {base_objective(m) for m in sure} | sure
    arms = [(ds, mid) for ds, mid in headline_ids if mid.split("/")[1] in keep]
    return study_table(df, ret, arms, ["lr"], [cfg.full_precision_scheme, cfg.quantized_scheme])


def lr_figure(table: pd.DataFrame, cfg: ReportConfig, target_m4: dict[str, float], png, pdf) -> None:
    """Per dataset: retention at full precision and at the quantized scheme, and M4 relative to the
    target, vs lr; SURE methods dashed beside their objectives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted(table.dataset.unique()) if not table.empty else []
    fig, axes = plt.subplots(max(1, len(datasets)), 3, figsize=(14, 3.6 * max(1, len(datasets))), squeeze=False)
    fp, q = cfg.full_precision_scheme, cfg.quantized_scheme
    panels = ((f"{fp} ret", f"retention at {fp}"), (f"{q} ret", f"retention at {q}"),
              (f"{fp} M4", f"M4 at {fp} / target's"))
    for i, ds in enumerate(datasets):
        d = table[table.dataset == ds]
        colors = {}
        for method, g in d.groupby("method", sort=True):
            base = base_objective(method)
            color = colors.setdefault(base, f"C{len(colors)}")
            g = g.assign(_lr=g.lr.astype(float)).sort_values("_lr")
            for j, (col, title) in enumerate(panels):
                y = g[col].to_numpy(dtype=float)
                if col.endswith("M4"):
                    y = y / target_m4.get(ds, math.nan)
                axes[i][j].plot(g._lr, y, marker="o", color=color, label=method,
                                linestyle="--" if is_saliency_method(method) else "-")
        lrs = sorted(d.lr.astype(float).unique())
        for j, (_, title) in enumerate(panels):
            ax = axes[i][j]
            ax.set_title(f"{ds}: {title}")
            ax.set_xscale("log")
            ax.set_xticks(lrs, [f"{v:g}" for v in lrs])
            ax.minorticks_off()
            ax.set_xlabel("learning rate")
            ax.set_ylim(-0.05, 1.15)
            ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(png, dpi=cfg.figure_dpi)
    fig.savefig(pdf)
    plt.close(fig)


def write_studies(df: pd.DataFrame, ret: pd.DataFrame, cfg: ReportConfig, studies: dict,
                  selections: dict[str, str], out: dict) -> None:
    """``studies``: name -> {"arms": [[dataset, model_id], ...], "schemes": [...]}, plus "headline"."""
    get = lambda name: studies.get(name, {"arms": [], "schemes": []})  # noqa: E731
    grid = get("alpha_grid")
    _write("table4_alpha_grid", alpha_grid_table(df, ret, grid["arms"], grid["schemes"], selections), out,
           STUDY_TABLES["table4_alpha_grid"][0])
    _write("table3_sure", sure_table(df, ret, cfg, [tuple(a) for a in get("headline")["arms"]]), out,
           STUDY_TABLES["table3_sure"][0])
    for stem, study in (("lr_sweep", "lr"), ("epochs_ablation", "epochs"), ("loss_variants", "loss_variant")):
        s = get(study)
        table = study_table(df, ret, s["arms"], STUDY_VARY[study], s["schemes"])
        _write(stem, table, out, STUDY_TABLES[stem][0])

