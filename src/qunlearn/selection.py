"""Alpha selection (paper: alpha by grid search per method), as a pure function and a stage.

The rule (``AlphaSelectionConfig``): among the grid's alphas whose M4 at the deciding scheme is at
least ``min_utility_fraction`` x the target's M4, pick the lowest forget retention
(``report.retention.forget_retention``, the definition the retention tables use; a metric on which
the target scores 0 is left out of it); ties go to the smaller alpha. When no alpha meets the
constraint, the alpha with the highest M4 is picked and ``constraint_met`` is false.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import runtime
from .config import AlphaSelectionConfig, from_dict, to_dict
from .report.retention import forget_retention

# Scores within this of each other count as equal (the constraint compares float means).
TOLERANCE = 1e-9


def select_alpha(grid: dict[float, dict], target: dict, min_utility_fraction: float) -> dict:
    """``grid``: alpha -> metrics (verbmem_f, knowmem_f, knowmem_r, 0..1); ``target``: the same
    for the target. Returns the selected alpha and the scored grid."""
    if not grid:
        raise ValueError("alpha selection needs at least one grid point")
    floor = min_utility_fraction * target["knowmem_r"]
    rows = []
    for alpha in sorted(grid):
        s = grid[alpha]
        rows.append(
            {
                "alpha": alpha,
                "forget_retention": forget_retention(s, target),
                "utility": s["knowmem_r"],
                "meets_utility": s["knowmem_r"] >= floor - TOLERANCE,
            }
        )
    ok = [r for r in rows if r["meets_utility"]]
    if ok:
        best = min(ok, key=lambda r: (r["forget_retention"], r["alpha"]))
    else:
        best = min(rows, key=lambda r: (-r["utility"], r["alpha"]))
    return {"alpha": best["alpha"], "constraint_met": bool(ok), "utility_floor": floor, "grid": rows}


def select_alpha_stage(
    grid_evals: dict[str, str],
    target_eval: str | None,
    alphas: list[float],
    cfg: dict,
    out_json: str | Path,
    method: str,
) -> dict:
    """Write the selection of one (dataset, method). ``grid_evals``: alpha text -> eval JSON at the
    deciding scheme; with a single configured alpha there is nothing to evaluate."""
    started = time.time()
    scfg = from_dict(AlphaSelectionConfig, cfg, "unlearn.alpha_selection")
    if len(alphas) == 1:
        result = {
            "alpha": float(alphas[0]),
            "constraint_met": None,
            "grid": [],
            "note": "one alpha configured: used as is",
        }
    else:
        grid = {float(a): _eval_metrics(p) for a, p in grid_evals.items()}
        target = _eval_metrics(target_eval)
        result = select_alpha(grid, target, scfg.min_utility_fraction)
    inputs = {f"alpha~{a}": p for a, p in grid_evals.items()}
    if target_eval:
        inputs["target"] = target_eval
    out = {
        "method": method,
        **result,
        "meta": runtime.build_meta(
            "select_alpha", {"alpha_selection": to_dict(scfg), "alphas": alphas}, None, inputs, started
        ),
    }
    runtime.write_json_atomic(out_json, out)
    return out


def _eval_metrics(path: str | Path) -> dict:
    return runtime.read_json(path, "an evaluation (evaluate's JSON)", keys=("metrics",))["metrics"]


def read_selection(selection_json: str | Path) -> dict:
    """A selection file (select_alpha's JSON); errors name the file and what is missing."""
    data = runtime.read_json(selection_json, "an alpha selection (select_alpha's JSON)", keys=("alpha", "grid"))
    try:
        float(data["alpha"])
    except (TypeError, ValueError):
        raise runtime.InputFileError(f"{selection_json}: 'alpha' is {data['alpha']!r}, not a number") from None
    return data


def selected_alpha(selection_json: str | Path) -> float:
    return float(read_selection(selection_json)["alpha"])
