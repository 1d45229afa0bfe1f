"""The recovery-attack tables from hand-made evaluations: retention before/after, the re-teaching
control, held-out scoring on half B only, robust retention's worst case, and the files of rule
aggregate_attacks (empty config included)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from qunlearn import paths
from qunlearn.config import ReportConfig
from qunlearn.report import catalog
from qunlearn.report.attacks import aggregate_attacks, recovery_table, robust_table

ARM = "unlearn/npo_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
PEOPLE = ["Ann A", "Bob B", "Cid C", "Dee D"]


def ev(verbmem: float, knowmem: float, utility: float = 1.0, per_entity: dict | None = None) -> dict:
    """An eval JSON: metrics, and per-item scores (one VerbMem and one KnowMem item per person)."""
    per_entity = per_entity or {p: (verbmem, knowmem) for p in PEOPLE}
    items = {
        "verbmem_f": [{"entity": p, "score": v[0]} for p, v in per_entity.items()],
        "knowmem_f": [{"entity": p, "score": v[1]} for p, v in per_entity.items()],
    }
    return {
        "metrics": {"verbmem_f": verbmem, "knowmem_f": knowmem, "knowmem_r": utility, "mia_auc": 0.5},
        "items": items,
    }


def job(attack: str, parent: str, point: dict, strength: str, finetunes=False, needs_entities=False) -> dict:
    return {
        "dataset": "synth",
        "model_id": paths.derived_id(parent, attack, point),
        "attack": attack,
        "point": point,
        "strength": strength,
        "value": point[strength],
        "parent": parent,
        "finetunes": finetunes,
        "needs_entities": needs_entities,
    }


def test_recovery_rows_give_retention_and_recovery_above_the_retrain_control():
    jobs = [job("relearn", p, {"steps": "10"}, "steps", finetunes=True) for p in (ARM, "retrain")]
    jobs.append(job("noise", ARM, {"c": "0.5"}, "c"))
    evals = {
        ("synth", "target", "fp32"): ev(0.8, 0.8, 1.0),
        ("synth", ARM, "fp32"): ev(0.2, 0.2, 0.9),
        ("synth", "retrain", "fp32"): ev(0.1, 0.1, 1.0),
        ("synth", jobs[0]["model_id"], "fp32"): ev(0.6, 0.4, 0.9),  # retention (0.75 + 0.5) / 2
        ("synth", jobs[1]["model_id"], "fp32"): ev(0.2, 0.2, 1.0),  # the control: 0.25
        ("synth", jobs[2]["model_id"], "fp32"): ev(0.4, 0.4, 0.45),
    }
    rec = recovery_table(jobs, ["fp32", "rtn4"], evals).set_index(["attacked", "attack"])
    r = rec.loc[("npo_gdr", "relearn")]
    assert (r.retention_before, r.retention) == pytest.approx((0.25, 0.625))
    assert (r.control_retention, r.above_control) == pytest.approx((0.25, 0.375))
    assert r.utility_rel == pytest.approx(0.9)
    n = rec.loc[("npo_gdr", "noise")]
    assert math.isnan(n.control_retention)  # not a fine-tuning attack: no re-teaching control
    assert n.utility_rel == pytest.approx(0.45)
    assert set(rec.scheme) == {"fp32"}  # rtn4 has no evaluations here
    assert math.isnan(rec.loc[("retrain", "relearn")].control_retention)  # a control has no control


def test_heldout_relearning_is_scored_on_half_b_only():
    j = job("heldout_relearn", ARM, {"steps": "20"}, "steps", finetunes=True, needs_entities=True)
    trained, scored = {"Ann A", "Bob B"}, {"Cid C", "Dee D"}
    # the attacked model recalls half A perfectly (it was trained on it) and half B at 0.4
    after = {p: ((1.0, 1.0) if p in trained else (0.4, 0.4)) for p in PEOPLE}
    evals = {
        ("synth", "target", "fp32"): ev(0.8, 0.8),
        ("synth", ARM, "fp32"): ev(0.0, 0.0),
        ("synth", j["model_id"], "fp32"): ev(0.7, 0.7, per_entity=after),
    }
    rec = recovery_table([j], ["fp32"], evals, {"synth": scored})
    assert rec.retention.iloc[0] == pytest.approx(0.5)  # 0.4 / 0.8 on B, not 0.7 / 0.8
    assert rec.scored_on.iloc[0] == "heldout half B"
    with pytest.raises(ValueError, match="declare no entities"):
        recovery_table([j], ["fp32"], evals, {})


def test_robust_retention_takes_the_worst_case_over_schemes_and_attacks():
    schemes = {
        "fp32": {"quantizer": "none", "nominal_bits": 32},
        "rtn4": {"quantizer": "rtn", "nominal_bits": 4},
        "gptq": {"quantizer": "gptq", "nominal_bits": 4},
        "rtn8": {"quantizer": "rtn", "nominal_bits": 8},
    }
    evals = {("synth", "target", s): ev(0.8, 0.8) for s in schemes}
    evals |= {
        ("synth", ARM, "fp32"): ev(0.08, 0.08),
        ("synth", ARM, "rtn4"): ev(0.4, 0.4),
        ("synth", ARM, "gptq"): ev(0.2, 0.2),
        ("synth", ARM, "rtn8"): ev(0.8, 0.8),  # not a 4-bit scheme: not a robust-retention column
    }
    rec = pd.DataFrame(
        [
            {
                "dataset": "synth",
                "attacked": "npo_gdr",
                "attack": "noise",
                "point": "c~1",
                "scheme": "rtn4",
                "retention": 0.3,
            },
            {
                "dataset": "synth",
                "attacked": "npo_gdr",
                "attack": "noise",
                "point": "c~2",
                "scheme": "fp32",
                "retention": 0.6,
            },
            {
                "dataset": "synth",
                "attacked": "retrain",
                "attack": "noise",
                "point": "c~2",
                "scheme": "fp32",
                "retention": 0.9,
            },
        ]
    )
    robust = robust_table(rec, evals, {"synth": {"npo_gdr": ARM}}, schemes, ReportConfig()).iloc[0]
    assert (robust.fp32, robust.rtn4, robust.gptq, robust.noise) == pytest.approx((0.1, 0.5, 0.25, 0.6))
    assert "rtn8" not in robust.index
    assert robust.worst == pytest.approx(0.6) and robust.worst_at == "noise c~2 @ fp32"


def test_aggregate_attacks_writes_every_declared_file_even_without_attacks(tmp_path):
    out = {
        i.key(fmt): str(tmp_path / f"{i.stem}.{fmt}") for i in catalog.items("aggregate_attacks") for fmt in i.formats
    }
    aggregate_attacks([], {}, {"jobs": [], "schemes": ["fp32"], "halves_seed": 0}, {}, {}, {}, out)
    for path in out.values():
        assert (tmp_path / path).exists()
    assert "no rows" in (tmp_path / "recovery.md").read_text()
