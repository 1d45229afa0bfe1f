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


def _write_evals(root: Path, scores: dict) -> list[str]:
    """Eval JSONs of ``scores``: (model_id, scheme) -> (M1, M2, M4)."""
    evals = []
    for (mid, scheme), (m1, m2, m4) in scores.items():
        p = root / "results/synth/eval" / mid / f"{scheme}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4, "mia_auc": 0.3}}))
        evals.append(str(p))
    return evals


LORA = "unlearn/ihl_fila/alpha~1/lr~0.0002/epochs~40/loss~faithful"
DEPLOYED = f"derived/deploy/mode~adapter_on_quantized/of/{LORA}"


def test_a_deployment_is_a_row_of_metrics_and_of_the_zoo_table_but_not_a_headline_row(tmp_path):
    """metrics.csv gives a deployment's evaluations model 'deployment' with its arm's method, alpha
    and lr (read through the path grammar), outside the headline rows; the zoo table gives it a row
    of its own, labelled with the mode, at every scheme the table shows."""
    from qunlearn.report.frame import DEPLOYMENT, mark_headline
    from qunlearn.report.quant import zoo_table
    from qunlearn.report.tables import retention

    schemes = {**SCHEMES, "rtn8": {"quantizer": "rtn", "bits": 8, "group_size": 128, "nominal_bits": 8}}
    scores = {
        ("target", "fp32"): (1.0, 0.8, 0.5),
        ("target", "rtn8"): (1.0, 0.8, 0.5),
        ("target", "rtn4"): (0.9, 0.8, 0.5),
        ("retrain", "fp32"): (0.2, 0.1, 0.5),
        (LORA, "fp32"): (0.2, 0.0, 0.5),
        (LORA, "rtn8"): (0.2, 0.0, 0.5),
        (LORA, "rtn4"): (0.9, 0.8, 0.5),  # merged, then quantized: back to the target
        (DEPLOYED, "fp32"): (0.2, 0.0, 0.5),
        (DEPLOYED, "rtn8"): (0.2, 0.0, 0.5),
        (DEPLOYED, "rtn4"): (0.18, 0.08, 0.45),  # the fp adapter over the quantized base
    }
    cfg = from_dict(ReportConfig, {"utility_constrained": ["ga_gdr"]})
    df = long_metrics(_write_evals(tmp_path, scores), cfg)
    mark_headline(df, {"synth": [LORA]})
    dep = df[df.model_id == DEPLOYED]
    assert set(dep.model) == {DEPLOYMENT} and not dep.headline.any()
    assert set(dep.method) == {"ihl_fila"} and set(dep.alpha) == {"1"} and set(dep.lr) == {"0.0002"}
    # retention.csv and the headline tables keep to the arms
    assert DEPLOYED not in set(retention(df).model_id)
    robust = pd.DataFrame([{"dataset": "synth", "method": "ihl_fila", "worst": 0.9, "worst_at": "relearn @ fp32"}])
    wc = pd.DataFrame(
        [{"dataset": "synth", "method": "ihl_fila", "alpha": "1", "lr": "0.0002", "scheme": "rtn4", "scope": "overall"}]
    ).assign(frac_codes_changed=0.01)
    zoo = zoo_table(df[df.headline | (df.model == DEPLOYMENT)], wc, robust, schemes, cfg).set_index("method")
    label = "ihl_fila (quantized base + fp adapter)"
    assert list(zoo.index) == ["ihl_fila", label]
    merged, on_top = zoo.loc["ihl_fila"], zoo.loc[label]
    assert merged.retention_fp32 == on_top.retention_fp32 == pytest.approx(0.1)
    assert on_top.retention_rtn8 == pytest.approx(0.1)
    assert merged.retention_rtn4 == pytest.approx(1.0)
    assert on_top.retention_rtn4 == pytest.approx((0.18 / 0.9 + 0.08 / 0.8) / 2)
    assert on_top.m4_rel == pytest.approx(1.0)
    # neither analysed nor attacked: no changed codes, no robust worst case of its own
    assert merged.pct_codes_changed_rtn4 == pytest.approx(1.0) and pd.isna(on_top.pct_codes_changed_rtn4)
    assert merged.robust_worst == pytest.approx(0.9) and pd.isna(on_top.robust_worst)


NPO = "unlearn/npo_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
NPO_LR = "unlearn/npo_gdr/alpha~selected/lr~0.001/epochs~40/loss~faithful"
SURE = "unlearn/npo_gdr_sure/alpha~selected/lr~0.001/epochs~40/loss~faithful"
QA = "unlearn/npo_gdr_qa/alpha~selected/lr~0.001/epochs~40/loss~faithful"
QA_SCHEMES = {
    **SCHEMES,
    "rtn8": {"quantizer": "rtn", "bits": 8, "group_size": 128, "nominal_bits": 8},
}
# (model_id, scheme) -> (M1, M2, M4); target M4 0.5, so the 0.8 floor is M4 0.4
QA_SCORES = {
    ("target", "fp32"): (1.0, 0.8, 0.5),
    ("target", "rtn8"): (1.0, 0.8, 0.5),
    ("target", "rtn4"): (0.9, 0.8, 0.5),
    ("target", "gptq"): (0.5, 0.4, 0.5),
    ("retrain", "fp32"): (0.2, 0.1, 0.5),
    (NPO, "fp32"): (0.6, 0.8, 0.5),
    (NPO, "rtn8"): (0.6, 0.8, 0.5),
    (NPO, "rtn4"): (0.9, 0.8, 0.5),
    (NPO, "gptq"): (0.4, 0.4, 0.5),
    (NPO_LR, "fp32"): (0.3, 0.2, 0.45),
    (NPO_LR, "rtn4"): (0.45, 0.4, 0.45),  # the sweep arm: no rtn8, no gptq evaluation
    (SURE, "fp32"): (0.4, 0.4, 0.35),  # below the utility floor
    (SURE, "rtn4"): (0.45, 0.4, 0.35),
    (SURE, "gptq"): (0.25, 0.2, 0.35),
    (QA, "fp32"): (0.2, 0.2, 0.5),
    (QA, "rtn4"): (0.18, 0.16, 0.5),
    (QA, "gptq"): (0.1, 0.1, 0.5),
    ("unlearn/ga_gdr/alpha~2/lr~3e-05/epochs~40/loss~faithful", "fp32"): (0.1, 0.1, 0.5),  # not compared
}
QA_ARMS = {
    "arms": [["synth", NPO], ["synth", QA], ["synth", SURE], ["synth", NPO_LR]],
    "headline": [["synth", NPO], ["synth", QA], ["synth", SURE]],
    "min_utility_fraction": 0.8,
}


METHODS_QA = ("npo_gdr", "npo_gdr_sure", "npo_gdr_qa")  # their alpha~selected is 1 here


def _qa_frame(root: Path) -> pd.DataFrame:
    from qunlearn.report.frame import seed_mean

    cfg = from_dict(ReportConfig, {"utility_constrained": ["npo_gdr"]})
    return seed_mean(long_metrics(_write_evals(root, QA_SCORES), cfg, {("synth", m): 1 for m in METHODS_QA}))


def test_qa_comparison_table_on_hand_made_frames(tmp_path):
    """One row per compared arm (plain at both lrs, SURE, quantization-aware, in that order), M4
    relative to the target with the utility floor's flag, retention at full precision and at every
    4-bit scheme (not 8 bits), robust retention's worst case for the attacked headline arms only."""
    from qunlearn.report.quant import qa_comparison_table

    cfg = from_dict(ReportConfig, {"utility_constrained": ["npo_gdr"]})
    df = _qa_frame(tmp_path)
    robust = pd.DataFrame(
        [
            {"dataset": "synth", "method": "npo_gdr", "worst": 0.97, "worst_at": "relearn steps~25 @ rtn4"},
            {"dataset": "synth", "method": "npo_gdr_qa", "worst": 0.5, "worst_at": "noise c~1 @ fp32"},
        ]
    )
    t = qa_comparison_table(df, robust, QA_SCHEMES, cfg, QA_ARMS)
    assert list(t.method) == ["npo_gdr", "npo_gdr", "npo_gdr_sure", "npo_gdr_qa"]
    assert list(t.variant) == ["plain", "plain", "SURE", "quantization-aware"]
    assert list(t.lr) == ["3e-05", "0.001", "0.001", "0.001"] and set(t.alpha) == {"1"}
    assert set(t.objective) == {"npo_gdr"}
    cols = ["retention_fp32", "retention_rtn4", "retention_gptq"]  # full precision, then the 4-bit schemes
    assert [c for c in t.columns if c.startswith("retention_")] == cols
    assert t.m4_rel.tolist() == pytest.approx([1.0, 0.9, 0.7, 1.0])
    assert t.meets_utility.tolist() == [True, True, False, True]
    qa = t.set_index("variant").loc["quantization-aware"]
    assert qa.retention_fp32 == pytest.approx((0.2 + 0.25) / 2)
    assert qa.retention_rtn4 == pytest.approx((0.2 + 0.2) / 2)
    assert qa.retention_gptq == pytest.approx((0.2 + 0.25) / 2)
    plain_lr = t.iloc[1]
    assert plain_lr.retention_rtn4 == pytest.approx((0.5 + 0.5) / 2) and pd.isna(plain_lr.retention_gptq)
    # the worst case belongs to the attacked headline arm, not to the same method's sweep arm
    assert t.robust_worst.tolist()[0] == pytest.approx(0.97) and pd.isna(t.robust_worst.tolist()[1])
    assert pd.isna(t.robust_worst.tolist()[2]) and t.robust_worst.tolist()[3] == pytest.approx(0.5)
    assert t.robust_worst_at.tolist() == ["relearn steps~25 @ rtn4", "", "", "noise c~1 @ fp32"]
    # without attacks: no robust columns; without arms (no quantization-aware method): no rows
    assert "robust_worst" not in qa_comparison_table(df, pd.DataFrame(), QA_SCHEMES, cfg, QA_ARMS)
    assert qa_comparison_table(df, robust, QA_SCHEMES, cfg, {}).empty


def test_aggregate_quant_makes_the_qa_comparison_only_when_its_outputs_name_it(tmp_path):
    """The rule's outputs follow the catalog's conditions (Experiment.report_conditions()): without
    a quantization-aware method there is no qa_comparison output and nothing is written for it."""
    cfg = {"utility_constrained": ["npo_gdr"]}
    metrics = tmp_path / "metrics.csv"
    _qa_frame(tmp_path).to_csv(metrics, index=False)
    adir = tmp_path / "results/synth/analysis" / NPO
    adir.mkdir(parents=True)
    for scheme, frac in (("fp32", 1.0), ("rtn8", 0.1), ("rtn4", 0.002), ("gptq", 0.3)):
        one = _overall(frac)
        (adir / f"{scheme}.json").write_text(json.dumps({"overall": one, "by_module": {}, "by_layer": {}}))
    for present in (frozenset(), frozenset({"quantization_aware"})):
        root = tmp_path / ("with" if present else "without")
        out = {k: str(root / Path(p).name) for k, p in catalog.outputs("aggregate_quant", present).items()}
        assert ("qa_comparison_csv" in out) == bool(present)
        aggregate_quant(metrics, [str(adir)], cfg, QA_SCHEMES, out, qa=QA_ARMS)
        made = root / "qa_comparison.csv"
        assert made.exists() == bool(present)
        if present:
            assert len(pd.read_csv(made)) == 4
            assert "npo_gdr_qa" in (root / "qa_comparison.md").read_text()
