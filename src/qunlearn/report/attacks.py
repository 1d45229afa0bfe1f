"""The recovery-attack tables and figure (rule aggregate_attacks): recovery and robust
retention (the recovery curves are drawn from recovery.csv by rule figures).

Retention of an attacked model is :func:`retention.forget_retention` of its scores against the
target's at the same scheme, like every retention in the report. Held-out relearning (an attack
whose spec ``needs_entities``) is scored on half B of the forget entities only: the attacked
model's, its parent's and the target's per-item scores are restricted to the items of B
(``data.entities.subset_scores``), B being the half the attack job did not train on
(``data.entities.heldout_halves`` with the attack's ``halves_seed``: one function for both).

- ``recovery``: one row per (dataset, attacked model, attack point, scheme): retention before the
  attack (the parent) and after, and for a fine-tuning attack the retrain model's retention after
  the same attack (the re-teaching control) and the recovery above it (Feng et al. 2025: did the
  attack recover knowledge, or teach it?). M4 relative to the target says whether the attacked
  model still works.
- ``robust_retention``: per attacked method, retention at full precision, at each 4-bit scheme it
  is evaluated at, after each attack (the largest over the attack's points and schemes), and the
  worst case (the largest of them all) with where it occurs.
"""

from __future__ import annotations

import math

import pandas as pd

from .. import paths, runtime
from ..config import ReportConfig, from_dict
from ..data import entities
from .render import write_table
from .retention import forget_retention

UTILITY_KEY = "knowmem_r"  # M4: the utility the alpha selection constrains


def attacked_label(model_id: str) -> tuple[str, str]:
    """(label, kind) of an attacked model: an unlearned arm's method (kind ``arm``) or a base
    (kind ``control``)."""
    p = paths.parse_model_id(model_id)
    if p.kind == "unlearn":
        return p.method, "arm"
    if p.kind == "base":
        return p.base, "control"
    return model_id, p.kind


def _load_evals(eval_paths: list[str]) -> dict[tuple[str, str, str], dict]:
    out = {}
    for path in eval_paths:
        key = paths.parse_eval_file(path)
        out[key] = runtime.read_json(path, "an evaluation (evaluate's JSON)", keys=("metrics",))
    return out


def _heldout_scored(data_dirs: dict[str, str], seed: int) -> dict[str, set[str]]:
    """dataset -> the entities held-out relearning is scored on (half B)."""
    out = {}
    for ds, data_dir in data_dirs.items():
        if entities.declares_entities(data_dir):
            _, scored = entities.heldout_halves(entities.forget_entities(data_dir), seed)
            out[ds] = set(scored)
    return out


def _scores(ev: dict, keep: set[str] | None) -> dict:
    return entities.subset_scores(ev, keep) if keep is not None else ev["metrics"]


def recovery_table(
    jobs: list[dict], schemes: list[str], evals: dict, scored_on: dict[str, set[str]] | None = None
) -> pd.DataFrame:
    """The ``recovery`` rows (see the module docstring). ``jobs``: Experiment.attacks_for_report's;
    ``evals``: (dataset, model id, scheme) -> eval JSON; ``scored_on``: dataset -> half B."""
    rows = []
    for job in jobs:
        ds, mid, parent = job["dataset"], job["model_id"], job["parent"]
        keep = (scored_on or {}).get(ds) if job["needs_entities"] else None
        if job["needs_entities"] and keep is None:
            raise ValueError(f"{mid}: held-out relearning on dataset {ds!r}, whose data declare no entities")
        label, kind = attacked_label(parent)
        for scheme in schemes:
            if (ds, mid, scheme) not in evals:
                continue  # the scheme is not among the dataset's
            target = _scores(evals[(ds, "target", scheme)], keep)
            after = _scores(evals[(ds, mid, scheme)], keep)
            before = _scores(evals[(ds, parent, scheme)], keep)
            t_util = evals[(ds, "target", scheme)]["metrics"][UTILITY_KEY]
            util = evals[(ds, mid, scheme)]["metrics"][UTILITY_KEY]
            rows.append(
                {
                    "dataset": ds,
                    "attacked": label,
                    "kind": kind,
                    "attack": job["attack"],
                    "point": "/".join(f"{k}~{v}" for k, v in job["point"].items()),
                    "strength": job["strength"],
                    "value": job["value"],
                    "scheme": scheme,
                    "retention_before": forget_retention(before, target),
                    "retention": forget_retention(after, target),
                    "utility_rel": util / t_util if t_util > 0 else math.nan,
                    "scored_on": "heldout half B" if keep is not None else "forget set",
                    "finetunes": bool(job["finetunes"]),
                    "model_id": mid,
                }
            )
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=[*RECOVERY_COLUMNS, "model_id"])
    control = df[df.attacked == "retrain"].set_index(["dataset", "attack", "point", "scheme"]).retention
    idx = list(zip(df.dataset, df.attack, df.point, df.scheme))
    # an attacked arm's re-teaching control (the controls themselves have none)
    with_control = df.finetunes & (df.kind == "arm")
    df["control_retention"] = [control.get(i, math.nan) if c else math.nan for i, c in zip(idx, with_control)]
    df["above_control"] = df.retention - df.control_retention
    return df[[*RECOVERY_COLUMNS, "model_id"]]


RECOVERY_COLUMNS = [
    "dataset",
    "attacked",
    "kind",
    "attack",
    "point",
    "strength",
    "value",
    "scheme",
    "retention_before",
    "retention",
    "control_retention",
    "above_control",
    "utility_rel",
    "scored_on",
]


def robust_table(
    recovery: pd.DataFrame, evals: dict, methods_by_dataset: dict[str, dict[str, str]], schemes: dict, cfg: ReportConfig
) -> pd.DataFrame:
    """Per attacked method (``methods_by_dataset``: dataset -> method -> its headline model id):
    retention at full precision, at every 4-bit scheme it is evaluated at, after each attack (the
    largest over the attack's points and schemes), and the worst case over all of them."""
    four_bit = [s for s, v in schemes.items() if v.get("nominal_bits") == 4]
    rows = []
    for ds, methods in methods_by_dataset.items():
        for method, mid in methods.items():
            row: dict = {"dataset": ds, "method": method}
            cases: dict[str, float] = {}
            for scheme in [cfg.full_precision_scheme, *four_bit]:
                if (ds, mid, scheme) in evals and (ds, "target", scheme) in evals:
                    value = forget_retention(
                        evals[(ds, mid, scheme)]["metrics"], evals[(ds, "target", scheme)]["metrics"]
                    )
                    row[scheme] = cases[scheme] = value
            mine = recovery[(recovery.dataset == ds) & (recovery.attacked == method)]
            for attack, g in mine.groupby("attack", sort=False):
                best = g.loc[g.retention.idxmax()]
                row[attack] = best.retention
                cases[f"{attack} {best.point} @ {best.scheme}"] = best.retention
            if cases:
                worst = max(cases, key=lambda k: -math.inf if math.isnan(cases[k]) else cases[k])
                row["worst"], row["worst_at"] = cases[worst], worst
            rows.append(row)
    return pd.DataFrame(rows)


def aggregate_attacks(
    eval_paths: list[str],
    data_dirs: dict[str, str],
    attacks: dict,
    headline: dict[str, dict[str, str]],
    report_cfg: dict,
    schemes: dict,
    out: dict[str, str],
) -> None:
    """Rule aggregate_attacks: ``attacks`` is Experiment.attacks_for_report(); ``headline``:
    dataset -> attacked method -> its headline model id; ``schemes``: Experiment.scheme_table()."""
    cfg = from_dict(ReportConfig, report_cfg, "report")
    evals = _load_evals(eval_paths)
    heldout = any(j["needs_entities"] for j in attacks["jobs"])
    scored_on = _heldout_scored(data_dirs, attacks["halves_seed"]) if heldout else {}
    rec = recovery_table(attacks["jobs"], attacks["schemes"], evals, scored_on)
    write_table(out, "recovery", rec.drop(columns=["model_id"]), _recovery_text(rec))
    robust = robust_table(rec, evals, headline, schemes, cfg)
    write_table(out, "robust_retention", robust)


def _recovery_text(rec: pd.DataFrame) -> pd.DataFrame:
    """The reader's layout: the attacked methods' rows with their control, without bookkeeping."""
    cols = ["dataset", "attacked", "attack", "point", "scheme", "retention_before", "retention"]
    cols += ["control_retention", "above_control", "utility_rel"]
    return rec[cols].reset_index(drop=True) if not rec.empty else rec
