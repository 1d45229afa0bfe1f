"""The long metrics frame (metrics.csv): one row per (model, scheme, metric), read from the eval JSONs
through the path grammar (``paths.parse_eval_file``) and the metric specs (``METRICS``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import deploy, paths, runtime
from ..config import ReportConfig
from ..evaluate.metrics import privleak
from ..registries import METRICS

# A model row: where it lives (model_id), what it is (`model`: target | retrain | unlearn | external
# | deployment), and the alpha actually used ("selected" in a model_id is resolved from the alpha
# selection; the `selected` column keeps that fact). An external model's `method` is its name (no
# alpha, lr, ...); a deployment (qunlearn.deploy: a deployment mode of an arm) has its arm's
# method, alpha, lr, epochs and loss, and is never a headline row.
MODEL_KEY = ["dataset", "model_id", "model", "method", "alpha", "selected", "lr", "epochs", "loss"]
# headline: the row belongs to the headline tables (Table 1, retention.md, summary, the bar figure)
LONG_COLUMNS = [*MODEL_KEY, "headline", "scheme", "metric", "value"]
UNLEARNED = ("unlearn", "external")  # the `model` values of unlearned models (retention rows)
DEPLOYMENT = "deployment"  # the `model` value of a deployment mode's rows (the zoo table's extra rows)


def metric_specs() -> list:
    """The metric specs in table order (Table 1's columns)."""
    return sorted(METRICS.specs(), key=lambda s: s.order)


def column(key: str) -> str:
    """The metrics.csv name of an eval JSON's metric key."""
    return next(s.column for s in METRICS.specs() if s.key == key)


def raw_column(spec) -> str:
    """A relative metric (PrivLeak) also keeps its raw score, under its key upper-cased (MIA_AUC)."""
    return spec.key.upper()


def parse_eval_path(path: str | Path, selected_alphas: dict | None = None) -> dict:
    """Model key + scheme of an eval output; ``selected_alphas[(dataset, method)]`` resolves the
    alpha of arms whose path says alpha~selected."""
    dataset, model_id, scheme = paths.parse_eval_file(str(path))
    deployment = deploy.parse(model_id)
    # a deployment's row describes its arm (the parent), under its own model_id
    p = paths.parse_model_id(deployment[1] if deployment else model_id)
    alpha, selected = p.alpha, p.alpha == paths.SELECTED
    if selected:
        try:
            alpha = paths.fmt_num((selected_alphas or {})[(dataset, p.method)])
        except KeyError:
            raise ValueError(
                f"{path}: alpha~selected but no alpha selection for ({dataset}, {p.method}) was given"
            ) from None
    return {
        "dataset": dataset,
        "model_id": model_id,
        "model": DEPLOYMENT if deployment else (p.base or p.kind),
        "method": p.method or p.name,
        "alpha": alpha,
        "selected": selected,
        "lr": p.lr,
        "epochs": p.epochs,
        "loss": p.loss,
        "scheme": scheme,
    }


def long_metrics(eval_paths: list[str], cfg: ReportConfig, selected_alphas: dict | None = None) -> pd.DataFrame:
    """One row per (model, scheme, metric), scaled as the spec says (x100 as MUSE reports them); a
    metric ``relative_to`` a model (PrivLeak) is computed against that model's raw score at
    ``report.privleak_reference_scheme``, or against ``report.privleak_reference_auc[dataset]``
    where the config fixes one (:func:`privleak_reference`)."""
    rows, raw = [], {}
    for path in eval_paths:
        key = {**parse_eval_path(path, selected_alphas), "headline": True}
        scores = runtime.read_json(path, "an evaluation (evaluate's JSON)", keys=("metrics",))["metrics"]
        # every metric but an optional group's (enabled_by: the dataset may leave it off)
        absent = [spec.key for spec in metric_specs() if spec.key not in scores and not spec.enabled_by]
        if absent:
            raise runtime.InputFileError(f"{path}: metrics {absent} missing (an evaluation of another configuration?)")
        for spec in metric_specs():
            if spec.enabled_by and spec.key not in scores:  # an optional group the dataset left off
                continue
            name = raw_column(spec) if spec.relative_to else spec.column
            rows.append({**key, "metric": name, "value": spec.scale * scores[spec.key]})
            if spec.relative_to:
                raw[(spec, key["dataset"], key["model_id"], key["scheme"])] = (key, scores[spec.key])
    for (spec, dataset, _, _), (key, value) in raw.items():
        if dataset in cfg.privleak_reference_auc:  # a fixed reference AUC (MUSE's constants)
            rows.append({**key, "metric": spec.column, "value": privleak(value, cfg.privleak_reference_auc[dataset])})
            continue
        ref = raw.get((spec, dataset, spec.relative_to, cfg.privleak_reference_scheme))
        if ref is None:
            raise ValueError(
                f"{spec.column} of {key}: no eval of the {spec.relative_to} model at scheme "
                f"{cfg.privleak_reference_scheme!r} for dataset {dataset!r}"
            )
        rows.append({**key, "metric": spec.column, "value": privleak(value, ref[1])})
    df = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return df.sort_values(["dataset", "model", "method", "model_id", "scheme", "metric"], kind="stable").reset_index(
        drop=True
    )


def mark_headline(df: pd.DataFrame, headline_ids: dict[str, list[str]]) -> None:
    """Flag the rows the headline tables report: the bases and each dataset's headline arms (with
    their replicates, which the tables fold into the base-seed row: :func:`seed_mean`)."""
    df["headline"] = [mid in paths.BASES or mid in headline_ids.get(ds, ()) for ds, mid in zip(df.dataset, df.model_id)]


def seed_mean(df: pd.DataFrame) -> pd.DataFrame:
    """Replicates (``seed~<n>`` ids) folded into their base-seed rows: the base-seed model id and the
    mean value over the seeds. ``df`` itself when it has no replicate. (Retention is linear in the
    unlearned model's scores at a fixed target, so retention of the mean = mean of the retentions.)"""
    ids = df.model_id.map(paths.seedless_id)
    if (ids == df.model_id).all():
        return df
    keys = [c for c in df.columns if c != "value"]
    out = df.assign(model_id=ids).groupby(keys, sort=False, as_index=False, dropna=False).value.mean()
    return out[list(df.columns)].reset_index(drop=True)


def wide_metrics(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (model, scheme) with a column per metric."""
    return (
        df[df.metric.isin(metrics)]
        .pivot_table(index=[*MODEL_KEY, "scheme"], columns="metric", values="value")
        .reset_index()
    )


def read_metrics(path: str | Path) -> pd.DataFrame:
    """metrics.csv back as ``long_metrics`` wrote it (alpha and lr stay text: '3e-05', not 3e-05)."""
    text_cols = {c: str for c in LONG_COLUMNS if c not in ("value", "selected", "headline")}
    df = pd.read_csv(path, dtype=text_cols, keep_default_na=False)
    for col in ("selected", "headline"):
        df[col] = df[col].astype(str) == "True"
    return df


def privleak_reference(df: pd.DataFrame, dataset: str, cfg: ReportConfig) -> dict:
    """What PrivLeak of ``dataset`` was computed against: a fixed AUC from the config, or the
    evaluated retrain model's AUC at ``report.privleak_reference_scheme`` (summary.json records it)."""
    if dataset in cfg.privleak_reference_auc:
        return {"source": "fixed", "auc": float(cfg.privleak_reference_auc[dataset])}
    spec = next(s for s in metric_specs() if s.relative_to)
    rows = df[
        (df.dataset == dataset)
        & (df.model_id == spec.relative_to)
        & (df.scheme == cfg.privleak_reference_scheme)
        & (df.metric == raw_column(spec))
    ]
    auc = float(rows.value.iloc[0]) / spec.scale if len(rows) else float("nan")
    return {"source": f"{spec.relative_to} model at {cfg.privleak_reference_scheme}", "auc": auc}
