"""The figures (matplotlib, Agg): M1/M2 by scheme, the lr sweep, and retention and changed codes
against bits. Each draws one declared figure and saves every format of it through ``render``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..config import ReportConfig
from ..registries import METHODS
from .frame import column
from .quant import MEAN_LABEL
from .render import save_figure
from .scale import AS_TRAINED, four_bit
from .studies import objective
from .tables import MODEL_ORDER

X_BITS = [32, 16, 8, 4, 3, 2]
MARKERS = {
    "cast": "s",
    "bnb_int8": "^",
    "bnb_fp4": "v",
    "bnb_nf4": "<",
    "gptq": "D",
    "awq": "P",
    "rtn": "o",
    "none": "o",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _error_bars(ivals: pd.DataFrame | None, d: pd.DataFrame, labels: list[str], metric: str, scheme: str):
    """(2, n) distances from each bar's mean to its interval's ends (intervals.csv), or None."""
    if ivals is None or ivals.empty:
        return None
    iv = ivals[(ivals.metric == metric) & (ivals.scheme == scheme)]
    iv = iv.set_index(["dataset", "model_id"])[["mean", "lo", "hi"]].apply(pd.to_numeric, errors="coerce")
    ids = dict(zip(d.label, zip(d.dataset, d.model_id)))
    bars = [iv.loc[ids[lb]] if lb in ids and ids[lb] in iv.index else None for lb in labels]
    lo = [b["mean"] - b["lo"] if b is not None else np.nan for b in bars]
    hi = [b["hi"] - b["mean"] if b is not None else np.nan for b in bars]
    return np.maximum(np.array([lo, hi], dtype=float), 0.0)  # NaN stays NaN: no bar


def m1_m2_by_scheme(
    df: pd.DataFrame, cfg: ReportConfig, out: dict[str, str], ivals: pd.DataFrame | None = None
) -> None:
    """M1 and M2 per method (plus target and retrain) at each of the figure's schemes, with the
    bootstrap intervals of ``ivals`` (intervals.csv) as error bars."""
    plt = _pyplot()
    datasets = sorted(df.dataset.unique())
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.6 * len(datasets)), squeeze=False)
    schemes = [s for s in cfg.figure_schemes if s in set(df.scheme)]
    for i, ds in enumerate(datasets):
        d = df[df.dataset == ds].copy()
        d["label"] = [
            f"{r.method}\n(a={r.alpha}{'*' if r.selected else ''}, lr={r.lr})"
            if r.model == "unlearn"
            else f"{r.method}\n(external)"
            if r.model == "external"
            else r.model
            for r in d.itertuples()
        ]
        d["_order"] = d.model.map(MODEL_ORDER)
        labels = list(dict.fromkeys(d.sort_values(["_order", "method", "model_id"], kind="stable").label))
        for j, metric in enumerate((column("verbmem_f"), column("knowmem_f"))):
            ax = axes[i][j]
            width = 0.8 / max(1, len(schemes))
            x = np.arange(len(labels))
            for k, s in enumerate(schemes):
                vals = d[(d.metric == metric) & (d.scheme == s)].set_index("label").value
                ax.bar(
                    x + k * width - 0.4 + width / 2,
                    [vals.get(lb, np.nan) for lb in labels],
                    width,
                    yerr=_error_bars(ivals, d, labels, metric, s),
                    capsize=2,
                    error_kw={"elinewidth": 0.8},
                    label=s,
                )
            ax.set_xticks(x)
            ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
            ax.set_ylim(0, 118)
            ax.set_title(f"{ds}: {metric.replace('_', ' ')}")
            ax.set_ylabel("score (x100)")
            ax.legend(fontsize=7, ncol=len(schemes), loc="upper center", frameon=False)
    fig.tight_layout()
    save_figure(fig, out, "m1_m2_by_scheme", cfg.figure_dpi)


def lr_sweep(table: pd.DataFrame, cfg: ReportConfig, target_m4: dict[str, float], out: dict[str, str]) -> None:
    """Per dataset: retention at full precision and at the quantized scheme, and M4 relative to the
    target, vs lr; saliency-masked (SURE) methods dashed beside their objectives."""
    plt = _pyplot()
    datasets = sorted(table.dataset.unique()) if not table.empty else []
    fig, axes = plt.subplots(max(1, len(datasets)), 3, figsize=(14, 3.6 * max(1, len(datasets))), squeeze=False)
    fp, q = cfg.full_precision_scheme, cfg.quantized_scheme
    panels = (
        (f"{fp} ret", f"retention at {fp}"),
        (f"{q} ret", f"retention at {q}"),
        (f"{fp} M4", f"M4 at {fp} / target's"),
    )
    for i, ds in enumerate(datasets):
        d = table[table.dataset == ds]
        colors = {}
        for method, g in d.groupby("method", sort=True):
            color = colors.setdefault(objective(method), f"C{len(colors)}")
            g = g.assign(_lr=g.lr.astype(float)).sort_values("_lr")
            for j, (col, _title) in enumerate(panels):
                y = g[col].to_numpy(dtype=float)
                if col.endswith("M4"):
                    y = y / target_m4.get(ds, math.nan)
                axes[i][j].plot(
                    g._lr,
                    y,
                    marker="o",
                    color=color,
                    label=method,
                    linestyle="--" if METHODS[method].saliency_masked else "-",
                )
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
    save_figure(fig, out, "lr_sweep", cfg.figure_dpi)


def _group_label(g) -> str:
    if g is None or (isinstance(g, float) and math.isnan(g)) or g == 0:
        return "per channel"
    return f"g{int(g)}"


def _xpos(bits: int) -> float:
    return float(X_BITS.index(bits)) if bits in X_BITS else float(np.interp(bits, [2, 32], [5, 0]))


def _yerr(rows: pd.DataFrame, value: str, per_row: bool = False):
    """Error bars (distances below and above ``value``, never negative) from ``lo``/``hi``; None
    without them. ``per_row``: one (2, 1) array per row."""
    if not {"lo", "hi"} <= set(rows.columns):
        return [None] * len(rows) if per_row else None
    err = np.maximum(np.array([rows[value] - rows.lo, rows.hi - rows[value]], dtype=float), 0.0)
    return [err[:, [i]] for i in range(len(rows))] if per_row else err


def by_bits(
    d: pd.DataFrame,
    value: str,
    ylabel: str,
    stem: str,
    out: dict[str, str],
    dpi: int,
    fp_in_line: bool,
    symlog: bool = False,
) -> None:
    """One panel per (dataset, method label): RTN schemes as lines over bits (one per group size),
    every other scheme as a marker at its bits (offset sideways so the 4-bit points do not overlap).
    ``d``: rows with dataset, label, scheme, quantizer, bits, group_size, _order (scheme rank), ``value``,
    and optionally ``lo``/``hi`` (an interval of ``value``: drawn as error bars)."""
    plt = _pyplot()
    datasets = sorted(d.dataset.unique())
    methods = {ds: list(dict.fromkeys(d[d.dataset == ds].sort_values("method").label)) for ds in datasets}
    for ds in datasets:
        if MEAN_LABEL in methods[ds]:
            methods[ds] = [m for m in methods[ds] if m != MEAN_LABEL] + [MEAN_LABEL]
    n_cols = max(len(m) for m in methods.values())
    fig, axes = plt.subplots(
        len(methods), n_cols, figsize=(2.7 * n_cols, 2.6 * len(methods)), squeeze=False, sharey=True
    )
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
                ax.errorbar(
                    [_xpos(b) for b in pts.bits],
                    pts[value],
                    yerr=_yerr(pts, value),
                    fmt="-o",
                    ms=3,
                    lw=1.2,
                    capsize=2,
                    elinewidth=0.8,
                    color=colours[f"RTN {g}"],
                    label=f"RTN {g}",
                )
            others = sub[~sub.quantizer.isin(["rtn", "none"])]
            for (_, r), err in zip(others.iterrows(), _yerr(others, value, per_row=True)):
                ax.errorbar(
                    _xpos(r.bits) + offsets[r.scheme],
                    r[value],
                    yerr=err,
                    fmt=MARKERS.get(r.quantizer, "x"),
                    ms=5,
                    capsize=2,
                    elinewidth=0.8,
                    color=colours[r.scheme],
                    label=r.scheme,
                    linestyle="none",
                )
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
    fig.legend(
        list(handles.values()), list(handles), loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, out, stem, dpi)


def recovery_curves(recovery: pd.DataFrame, out: dict[str, str], dpi: int) -> None:
    """Retention against attack strength: one panel per (attack, scheme); a line per attacked
    model (methods solid, the retrain control dashed, the target control dotted), starting at the
    model before the attack (strength 0); from recovery.csv (report.attacks)."""
    plt = _pyplot()
    panels = list(dict.fromkeys(zip(recovery.attack, recovery.scheme))) or [("no attacks configured", "")]
    ncols = len(dict.fromkeys(recovery.scheme)) or 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    styles = {"target": ":", "retrain": "--"}
    for ax, (attack, scheme) in zip(axes.flat, panels):
        d = recovery[(recovery.attack == attack) & (recovery.scheme == scheme)]
        ax.set_title(f"{attack} @ {scheme}" if scheme else attack, fontsize=9)
        for (ds, label, extra), g in d.groupby([d.dataset, d.attacked, d.point.map(_other_keys)], sort=False):
            xs = ["0", *g.value.astype(str)]
            ys = [g.retention_before.iloc[0], *g.retention]
            name = " ".join(x for x in (label, extra, ds if d.dataset.nunique() > 1 else "") if x)
            ax.plot(range(len(xs)), ys, styles.get(label, "-"), marker="o", ms=3, label=name)
            ax.set_xticks(range(len(xs)), xs, fontsize=7)
        if not d.empty:
            ax.set_xlabel(d.strength.iloc[0], fontsize=8)
        ax.set_ylabel("forget retention", fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, out, "recovery_curves", dpi)


def _other_keys(point: str) -> str:
    """The point's segments other than its strength (e.g. a pruning criterion), for the legend."""
    parts = point.split("/")
    return " ".join(p.split("~", 1)[1] for p in parts[:-1]) if len(parts) > 1 else ""


def retention_vs_size(scale_rows: pd.DataFrame, schemes: dict, threshold: float, out: dict[str, str], dpi: int) -> None:
    """The scale study (qunlearn.report.scale): mean retention at full precision and each 4-bit scheme
    (left) and the % of 4-bit codes changed (right) against the parameter count, one line per scheme
    and release (as trained solid, snapped dashed); the onset threshold dotted. Without a scale study
    the panels say so."""
    from matplotlib.ticker import NullFormatter

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4), squeeze=False)
    left, right = axes[0]
    four = four_bit(schemes)
    full = [s for s in schemes if schemes[s]["quantizer"] == "none"]
    colours = {**{s: "k" for s in full}, **{s: f"C{i}" for i, s in enumerate(four)}}
    top = 1.05
    for ax, prefix, ylabel, shown in (
        (left, "retention_", "forget retention", [*full, *four]),
        (right, "pct_codes_changed_", "% 4-bit codes changed", four),
    ):
        for release, g in scale_rows.groupby("release", sort=False):
            g = g.sort_values("params")
            for s in shown:
                col = f"{prefix}{s}"
                if col in g and g[col].notna().any():
                    ax.plot(
                        g.params,
                        g[col],
                        "-" if release == AS_TRAINED else "--",
                        marker=MARKERS.get(schemes[s]["quantizer"], "o"),
                        color=colours[s],
                        ms=4,
                        label=f"{s} ({release})",
                    )
                    if ax is left:
                        top = max(top, float(g[col].max()) + 0.05)
        ax.set_xscale("log")
        # label the decades only: minor-tick labels of a log axis overlap within one decade
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("parameters", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    has_rows = bool(left.lines)
    left.axhline(threshold, color="grey", ls=":", lw=1)
    left.set_ylim(-0.02, top)
    if has_rows:
        left.legend(fontsize=6)
    else:
        for ax in (left, right):
            ax.text(0.5, 0.5, "no model-size study in this config", ha="center", va="center", transform=ax.transAxes)
    if right.lines:
        right.set_yscale("symlog", linthresh=0.01)  # a snapped release's NPO may change no code at all
        right.set_ylim(bottom=0)  # a share of codes is never negative
    fig.tight_layout()
    save_figure(fig, out, "retention_vs_size", dpi)
