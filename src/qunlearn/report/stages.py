"""One entry point per report rule. ``out`` is the rule's named outputs (``catalog.outputs(rule)``:
``<stem>_<format>`` -> path); every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import paths, runtime
from ..config import ReportConfig, from_dict
from ..selection import selected_alpha
from . import catalog, figures
from .catalog import key
from .frame import DEPLOYMENT, column, long_metrics, mark_headline, read_metrics, seed_mean
from .intervals import read_item_scores
from .quant import (
    method_labels,
    qa_comparison_table,
    read_optional_table,
    retention_by_bits,
    retention_by_bits_wide,
    scheme_order,
    table2_3,
    weight_change_long,
    weight_change_summary,
    zoo_table,
)
from .render import write_table
from .scale import ONSET_RETENTION, onset_table, onset_text, scale_table, scale_text
from .studies import write_studies
from .tables import (
    headline_interval,
    headline_retention,
    interval_table,
    retention,
    retention_wide,
    summary,
    table1,
    with_intervals,
)


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
    ret = headline_retention(retention(df), df)  # every model, replicates in rows of their own
    head_seeds = df[df.headline].reset_index(drop=True)
    head = seed_mean(head_seeds)  # one row per headline model: the mean over its seeds
    head_ret = retention(head) if head is not head_seeds else ret[ret.headline].reset_index(drop=True)
    schemes = list(dict.fromkeys([*cfg.figure_schemes, *sorted(df.scheme.unique())]))
    items = read_item_scores(list({p for p in eval_paths if _is_headline(p, head_seeds)}))
    ivals = interval_table(head_seeds, items, cfg)
    write_table(out, "metrics", df)
    t1 = table1(head, schemes, ivals)
    write_table(out, "table1", t1, with_intervals(t1, catalog_float("table1")))
    write_table(out, "retention", ret, retention_wide(head_ret, schemes))
    write_table(out, "intervals", ivals)
    s = summary(head, head_ret, cfg)
    for ds, value in headline_interval(head_seeds, items, cfg).items():
        s[ds]["headline_interval"] = value
    runtime.write_json_atomic(out[key("summary", "json")], s)
    if studies is not None:
        write_studies(df, ret, cfg, studies, selections or {}, out)


def _is_headline(eval_path: str, head: pd.DataFrame) -> bool:
    ds, mid, _ = paths.parse_eval_file(str(eval_path))
    return bool(((head.dataset == ds) & (head.model_id == mid)).any())


def _with_retention_intervals(rb: pd.DataFrame, intervals_csv: str | Path) -> pd.DataFrame:
    """``rb`` with ``lo``/``hi``: each method's retention interval from intervals.csv (none for the
    mean of the methods, whose interval is summary.json's headline_interval at two schemes)."""
    iv = pd.read_csv(intervals_csv, dtype=str, keep_default_na=False)
    iv = iv[iv.metric == "retention"][["dataset", "method", "alpha", "lr", "scheme", "lo", "hi"]]
    iv = iv.assign(lo=pd.to_numeric(iv.lo, errors="coerce"), hi=pd.to_numeric(iv.hi, errors="coerce"))
    iv = iv.drop_duplicates(["dataset", "method", "alpha", "lr", "scheme"])
    return rb.merge(iv, on=["dataset", "method", "alpha", "lr", "scheme"], how="left")


def catalog_float(stem: str) -> str:
    return catalog.get("table", stem).text_float


def draw_figures(
    metrics_csv: str | Path,
    lr_sweep_csv: str | Path,
    plot_cfg: dict,
    out: dict[str, str],
    intervals_csv: str | Path | None = None,
    recovery_csv: str | Path | None = None,
) -> None:
    """The figures of rule ``figures``, from metrics.csv (headline rows, seeds folded), the intervals
    (error bars) and the lr-sweep table with only the plot settings, so a plotting option
    (``report.figure_dpi``) reruns the figures and nothing else."""
    cfg = from_dict(ReportConfig, plot_cfg, "report")
    df = read_metrics(metrics_csv)
    ivals = pd.read_csv(intervals_csv, dtype=str, keep_default_na=False) if intervals_csv else None
    figures.m1_m2_by_scheme(seed_mean(df[df.headline].reset_index(drop=True)), cfg, out, ivals)
    try:
        table = pd.read_csv(lr_sweep_csv, dtype={"lr": str, "dataset": str, "method": str})
    except (pd.errors.EmptyDataError, ValueError, TypeError):  # no lr sweep in this config
        table = pd.DataFrame()
    t = df[(df.model == "target") & (df.scheme == cfg.full_precision_scheme) & (df.metric == column("knowmem_r"))]
    figures.lr_sweep(table, cfg, dict(zip(t.dataset, t.value)), out)
    no_attacks = pd.DataFrame(columns=["dataset", "attacked", "attack", "point", "strength", "value", "scheme"])
    try:
        recovery = (
            pd.read_csv(recovery_csv, dtype={"point": str, "value": str, "dataset": str})
            if recovery_csv
            else no_attacks
        )
    except pd.errors.EmptyDataError:  # no attack in this config: the figure says so
        recovery = no_attacks
    figures.recovery_curves(recovery, out, cfg.figure_dpi)


def aggregate_quant(
    metrics_csv: str | Path,
    analysis_paths: list[str],
    report_cfg: dict,
    schemes: dict,
    out: dict[str, str],
    intervals_csv: str | Path | None = None,
    robust_csv: str | Path | None = None,
    qa: dict | None = None,
    scale: dict[str, dict] | None = None,
) -> None:
    """The tables and figures of rule ``aggregate_quant`` from metrics.csv's headline rows (grid and
    sweep arms are in the study tables; replicates folded into their mean) and the analysis JSONs;
    ``schemes``: scheme -> {quantizer, nominal_bits, **settings}; ``intervals_csv``: the retention
    intervals drawn as error bars of retention_vs_bits; ``robust_csv``: rule aggregate_attacks'
    robust_retention.csv (absent or empty: the zoo table has no robust column). The zoo table also
    reports the deployments' rows; the qa_comparison table (made when ``out`` names it: a config
    with a quantization-aware method) the arms of ``qa`` (Experiment.qa_comparison_for_report());
    ``scale``: the model-size study's datasets (``Experiment.scale_study``; empty or None: no scale
    rows)."""
    cfg = from_dict(ReportConfig, report_cfg, "report")
    full = read_metrics(metrics_csv)
    with_seeds = full[full.headline].reset_index(drop=True)
    df = seed_mean(with_seeds)  # one row per headline model: the mean over its seeds
    missing = sorted(set(df.scheme) - set(schemes))
    if missing:
        raise ValueError(f"eval outputs for schemes not in quantize.schemes: {missing}")
    write_table(out, "table2_3_gptq_awq", table2_3(df, schemes, cfg))
    rb = retention_by_bits(retention(df), schemes, cfg)
    write_table(out, "retention_by_bits", rb, retention_by_bits_wide(rb, schemes))
    wc = weight_change_long(analysis_paths, schemes, with_seeds)
    write_table(out, "weight_change", wc, weight_change_summary(wc))
    robust = read_optional_table(robust_csv)
    deployed = seed_mean(full[full.model == DEPLOYMENT].reset_index(drop=True))  # the zoo's extra rows
    zoo_rows = pd.concat([df, deployed], ignore_index=True) if len(deployed) else df
    write_table(out, "zoo", zoo_table(zoo_rows, wc, robust, schemes, cfg))
    if key("qa_comparison", "csv") in out:
        write_table(out, "qa_comparison", qa_comparison_table(seed_mean(full), robust, schemes, cfg, qa or {}))
    sc = scale_table(df, wc, scale or {}, schemes, cfg)
    write_table(out, "scale", sc, scale_text(sc))
    onset = onset_table(sc, schemes)
    write_table(out, "scale_onset", onset, onset_text(onset))
    figures.retention_vs_size(sc, schemes, ONSET_RETENTION, out, cfg.figure_dpi)

    order = {s: i for i, s in enumerate(scheme_order(schemes))}
    group_size = lambda d: [schemes[s].get("group_size") for s in d.scheme]  # noqa: E731
    rbf = rb.assign(label=method_labels(rb), _order=rb.scheme.map(order))
    if intervals_csv:
        rbf = _with_retention_intervals(rbf, intervals_csv)
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
