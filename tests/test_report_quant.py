"""Quantizer reports from hand-written eval and analysis JSONs: values traced through, files made."""

import json
from pathlib import Path

import pandas as pd
import pytest

from qunlearn.config import ReportConfig, from_dict
from qunlearn.report import catalog
from qunlearn.report.frame import long_metrics
from qunlearn.report.quant import MEAN_LABEL, parse_analysis_path
from qunlearn.report.stages import aggregate_quant

ARM = "unlearn/ga_gdr/alpha~2/lr~3e-05/epochs~40/loss~faithful"
SCHEMES = {
    "fp32": {"quantizer": "none", "nominal_bits": 32},
    "rtn4": {"quantizer": "rtn", "bits": 4, "group_size": 128, "include_lm_head": False, "nominal_bits": 4},
    "gptq": {"quantizer": "gptq", "bits": 4, "group_size": 128, "nominal_bits": 4},
}
# (model_id, scheme) -> (M1, M2) in [0, 1]
SCORES = {
    ("target", "fp32"): (1.0, 0.8),
    ("target", "rtn4"): (0.9, 0.8),
    ("target", "gptq"): (0.5, 0.4),
    ("retrain", "fp32"): (0.2, 0.1),
    ("retrain", "rtn4"): (0.2, 0.1),
    ("retrain", "gptq"): (0.2, 0.1),
    (ARM, "fp32"): (0.2, 0.4),
    (ARM, "rtn4"): (0.9, 0.4),
    (ARM, "gptq"): (0.25, 0.1),
}


def _overall(frac):
    return {
        "n_weights": 10,
        "cosine": 0.99,
        "rel_l2": 0.05,
        "frac_fp_changed": 1.0,
        "frac_codes_changed": frac,
        "frac_dequant_changed": frac,
        "q_cosine": 0.98,
        "q_rel_l2": 0.1,
    }


def test_aggregate_quant_tables_and_figures(tmp_path):
    evals, analyses = [], []
    for (mid, scheme), (m1, m2) in SCORES.items():
        p = tmp_path / "results/synth/eval" / mid / f"{scheme}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": 0.9, "mia_auc": 0.3}}))
        evals.append(str(p))
    adir = tmp_path / "results/synth/analysis" / ARM
    adir.mkdir(parents=True)
    for scheme, frac in (("fp32", 1.0), ("rtn4", 0.002), ("gptq", 0.3)):
        (adir / f"{scheme}.json").write_text(
            json.dumps(
                {"overall": _overall(frac), "by_module": {"q_proj": _overall(frac)}, "by_layer": {"0": _overall(frac)}}
            )
        )
    analyses.append(str(adir))
    out = {
        k: str(tmp_path / p.replace("results/tables", "t").replace("results/figures", "f"))
        for k, p in catalog.outputs("aggregate_quant").items()
    }
    report_cfg = {"utility_constrained": ["ga_gdr"]}
    metrics = tmp_path / "metrics.csv"  # what rule aggregate writes (every row headline here)
    long_metrics(evals, from_dict(ReportConfig, report_cfg)).to_csv(metrics, index=False)
    aggregate_quant(metrics, analyses, report_cfg, SCHEMES, out)

    rb = pd.read_csv(tmp_path / "t/retention_by_bits.csv", keep_default_na=False)
    ga = rb[rb.method == "ga_gdr"].set_index("scheme")
    assert ga.retention["fp32"] == pytest.approx((0.2 / 1.0 + 0.4 / 0.8) / 2)
    assert ga.retention["rtn4"] == pytest.approx((0.9 / 0.9 + 0.4 / 0.8) / 2)
    assert ga.retention["gptq"] == pytest.approx((0.25 / 0.5 + 0.1 / 0.4) / 2)
    assert ga.bits.to_dict() == {"fp32": 32, "rtn4": 4, "gptq": 4}
    mean = rb[rb.method == MEAN_LABEL].set_index("scheme")
    assert mean.retention.to_dict() == pytest.approx(ga.retention.to_dict())

    t23 = pd.read_csv(tmp_path / "t/table2_3_gptq_awq.csv")
    assert set(t23.scheme) == {"fp32", "gptq"}  # RTN is not part of Tables 2/3
    row = t23[(t23.row.str.startswith("GA_GDR")) & (t23.scheme == "gptq")].iloc[0]
    assert row.M1_VerbMem_f == pytest.approx(25.0) and row.M2_KnowMem_f == pytest.approx(10.0)

    wc = pd.read_csv(tmp_path / "t/weight_change.csv", keep_default_na=False)
    assert set(wc.scope) == {"overall", "module:q_proj", "layer:0"}
    assert wc[(wc.scope == "overall") & (wc.scheme == "rtn4")].frac_codes_changed.item() == pytest.approx(0.002)
    assert "0.200" in (tmp_path / "t/weight_change.md").read_text()  # 0.2 % of codes, as a percentage
    for k in (
        "retention_vs_bits_png",
        "retention_vs_bits_pdf",
        "codes_changed_vs_bits_png",
        "codes_changed_vs_bits_pdf",
    ):
        assert Path(out[k]).stat().st_size > 1000
    assert not list(tmp_path.rglob(".*tmp-*")), "atomic writes leave no temporary files"


def test_analysis_paths_share_the_eval_grammar():
    mid = "unlearn/npo/alpha~1/lr~3e-05/epochs~40/loss~faithful"
    key = parse_analysis_path(f"results/synth/analysis/{mid}/bnb_nf4.json")
    assert key == {
        "dataset": "synth",
        "model_id": mid,
        "model": "unlearn",
        "method": "npo",
        "alpha": "1",
        "selected": False,
        "lr": "3e-05",
        "epochs": "40",
        "loss": "faithful",
        "scheme": "bnb_nf4",
    }
    with pytest.raises(ValueError, match="not an analysis output path"):
        parse_analysis_path("results/synth/eval/target/fp32.json")


def test_zoo_table_on_hand_made_frames(tmp_path):
    """Retention at fp32/8/4 bits, M4 relative to the target, codes changed at the quantized scheme
    and robust retention's worst case, traced from hand-written evals and analysis rows."""
    from qunlearn.report.quant import zoo_table

    schemes = {**SCHEMES, "rtn8": {"quantizer": "rtn", "bits": 8, "group_size": 128, "nominal_bits": 8}}
    arm2 = "unlearn/rmu/alpha~100/lr~0.001/epochs~40/loss~faithful"
    # (model_id, scheme) -> (M1, M2, M4)
    scores = {
        ("target", "fp32"): (1.0, 0.8, 0.5),
        ("target", "rtn8"): (1.0, 0.8, 0.5),
        ("target", "rtn4"): (0.9, 0.8, 0.5),
        ("retrain", "fp32"): (0.2, 0.1, 0.5),
        (ARM, "fp32"): (0.2, 0.4, 0.4),
        (ARM, "rtn8"): (0.3, 0.4, 0.4),
        (ARM, "rtn4"): (0.9, 0.4, 0.45),
        (arm2, "fp32"): (0.1, 0.0, 0.25),
        (arm2, "rtn4"): (0.45, 0.4, 0.25),
    }
    evals = []
    for (mid, scheme), (m1, m2, m4) in scores.items():
        p = tmp_path / "results/synth/eval" / mid / f"{scheme}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4, "mia_auc": 0.3}}))
        evals.append(str(p))
    cfg = from_dict(ReportConfig, {"utility_constrained": ["ga_gdr"]})
    df = long_metrics(evals, cfg)
    wc = pd.DataFrame(
        [
            {"dataset": "synth", "method": "ga_gdr", "alpha": "2", "lr": "3e-05", "scheme": "rtn4", "scope": "overall"}
            | {"frac_codes_changed": 0.002},
            {"dataset": "synth", "method": "ga_gdr", "alpha": "2", "lr": "3e-05", "scheme": "rtn4", "scope": "layer:0"}
            | {"frac_codes_changed": 0.5},
        ]
    )
    robust = pd.DataFrame([{"dataset": "synth", "method": "ga_gdr", "worst": 0.95, "worst_at": "relearn n~8 @ rtn4"}])
    zoo = zoo_table(df, wc, robust, schemes, cfg).set_index("method")
    assert list(zoo.index) == ["ga_gdr", "rmu"]
    cols = ["retention_fp32", "retention_rtn8", "retention_rtn4", "m4_rel", "pct_codes_changed_rtn4"]
    assert [c for c in zoo.columns if c in cols] == cols
    ga, rmu = zoo.loc["ga_gdr"], zoo.loc["rmu"]
    assert ga.retention_fp32 == pytest.approx((0.2 + 0.5) / 2)
    assert ga.retention_rtn8 == pytest.approx((0.3 + 0.5) / 2)
    assert ga.retention_rtn4 == pytest.approx((1.0 + 0.5) / 2)
    assert ga.m4_rel == pytest.approx(0.8) and rmu.m4_rel == pytest.approx(0.5)
    assert ga.pct_codes_changed_rtn4 == pytest.approx(0.2)
    assert pd.isna(rmu.retention_rtn8) and pd.isna(rmu.pct_codes_changed_rtn4)
    assert rmu.retention_rtn4 == pytest.approx((0.5 + 0.5) / 2)
    assert ga.robust_worst == pytest.approx(0.95) and ga.robust_worst_at == "relearn n~8 @ rtn4"
    assert pd.isna(rmu.robust_worst)
    # no attacks: no robust column; no 8-bit scheme evaluated: no 8-bit column
    bare = zoo_table(df[df.scheme != "rtn8"], wc, pd.DataFrame(), schemes, cfg)
    assert "robust_worst" not in bare and "retention_rtn8" not in bare
    assert len(bare) == 2
