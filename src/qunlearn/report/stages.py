"""One entry point per report rule. ``out`` is the rule's named outputs (``catalog.outputs(rule)``:
``<stem>_<format>`` -> path); every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runtime
from ..config import ReportConfig, from_dict
from ..selection import selected_alpha
from . import figures
from .catalog import key
from .frame import column, long_metrics, mark_headline, read_metrics
from .quant import (
    method_labels,
    retention_by_bits,
    retention_by_bits_wide,
    scheme_order,
    table2_3,
    weight_change_long,
    weight_change_summary,
)
from .render import write_table
from .studies import write_studies
from .tables import headline_retention, retention, retention_wide, summary, table1


def aggregate(
    eval_paths: list[str],
    report_cfg: dict,
    out: dict[str, str],
    selections: dict[str, str] | None = None,
    headline_ids: dict[str, list[str]] | None = None,
    studies: dict | None = None,
) -> None:
    """The tables of rule ``aggregate`` (its figures are rule ``figures``). ``selections``:
    "dataset/method" -> selection JSON (resolves alpha~selected); ``headline_ids``: dataset -> the
    model_ids the headline tables report (every unlearned model when None); ``studies``: study ->
    {"arms": [[dataset, model_id]], "schemes": [...]} (``studies``)."""
    cfg = from_dict(ReportConfig, report_cfg, "report")
    selected_alphas = {tuple(k.split("/", 1)): selected_alpha(p) for k, p in (selections or {}).items()}
    df = long_metrics(eval_paths, cfg, selected_alphas)
    if headline_ids is not None:
        mark_headline(df, headline_ids)
    ret = headline_retention(retention(df), df)
    head = df[df.headline].reset_index(drop=True)
    head_ret = ret[ret.headline].reset_index(drop=True)
    schemes = list(dict.fromkeys([*cfg.figure_schemes, *sorted(df.scheme.unique())]))
    write_table(out, "metrics", df)
    write_table(out, "table1", table1(head, schemes))
    write_table(out, "retention", ret, retention_wide(head_ret, schemes))
    runtime.write_json_atomic(out[key("summary", "json")], summary(head, head_ret, cfg))
    if studies is not None:
        write_studies(df, ret, cfg, studies, selections or {}, out)


def draw_figures(metrics_csv: str | Path, lr_sweep_csv: str | Path, plot_cfg: dict, out: dict[str, str]) -> None:
    """The figures of rule ``figures``, from metrics.csv (headline rows) and the lr-sweep table with
    only the plot settings, so a plotting option (``report.figure_dpi``) reruns the figures and
    nothing else."""
    cfg = from_dict(ReportConfig, plot_cfg, "report")
    df = read_metrics(metrics_csv)
    figures.m1_m2_by_scheme(df[df.headline], cfg, out)
    try:
        table = pd.read_csv(lr_sweep_csv, dtype={"lr": str, "dataset": str, "method": str})
    except (pd.errors.EmptyDataError, ValueError, TypeError):  # no lr sweep in this config
        table = pd.DataFrame()
    t = df[(df.model == "target") & (df.scheme == cfg.full_precision_scheme) & (df.metric == column("knowmem_r"))]
    figures.lr_sweep(table, cfg, dict(zip(t.dataset, t.value)), out)


def aggregate_quant(
    metrics_csv: str | Path, analysis_paths: list[str], report_cfg: dict, schemes: dict, out: dict[str, str]
) -> None:
    """The tables and figures of rule ``aggregate_quant`` from metrics.csv's headline rows (grid and
    sweep arms are in the study tables) and the analysis JSONs; ``schemes``: scheme -> {quantizer,
    nominal_bits, **settings}."""
    cfg = from_dict(ReportConfig, report_cfg, "report")
    df = read_metrics(metrics_csv)
    df = df[df.headline].reset_index(drop=True)
    missing = sorted(set(df.scheme) - set(schemes))
    if missing:
        raise ValueError(f"eval outputs for schemes not in quantize.schemes: {missing}")
    write_table(out, "table2_3_gptq_awq", table2_3(df, schemes, cfg))
    rb = retention_by_bits(retention(df), schemes, cfg)
    write_table(out, "retention_by_bits", rb, retention_by_bits_wide(rb, schemes))
    wc = weight_change_long(analysis_paths, schemes, df)
    write_table(out, "weight_change", wc, weight_change_summary(wc))

    order = {s: i for i, s in enumerate(scheme_order(schemes))}
    group_size = lambda d: [schemes[s].get("group_size") for s in d.scheme]  # noqa: E731
    rbf = rb.assign(label=method_labels(rb), _order=rb.scheme.map(order))
    figures.by_bits(
        rbf.assign(group_size=group_size(rbf)),
        "retention",
        "retention",
        "retention_vs_bits",
        out,
        cfg.figure_dpi,
        fp_in_line=True,
    )
    wco = wc[wc.scope == "overall"]
    wco = wco.assign(label=method_labels(wco), pct=100.0 * wco.frac_codes_changed, _order=wco.scheme.map(order))
    wco = wco.assign(group_size=group_size(wco))
    figures.by_bits(
        wco[wco.quantizer != "none"],
        "pct",
        "% codes changed",
        "codes_changed_vs_bits",
        out,
        cfg.figure_dpi,
        fp_in_line=False,
        symlog=True,
    )
