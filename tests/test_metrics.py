import math

import numpy as np
import pandas as pd
import pytest

from qunlearn.config import ReportConfig
from qunlearn.evaluate import metrics
from qunlearn.report.frame import long_metrics, parse_eval_path
from qunlearn.report.tables import retention, summary
from qunlearn.runtime import write_json_atomic


def test_rouge_l_f1_hand_checked():
    assert metrics.rouge_l_f1("the cat sat", "the cat sat") == 1.0
    assert metrics.rouge_l_f1("dog", "the cat sat") == 0.0
    # LCS("the cat", "the big cat") = 2; P = 2/2, R = 2/3 -> F1 = 0.8
    assert metrics.rouge_l_f1("the cat", "the big cat") == pytest.approx(0.8)
    # tokenisation lower-cases and drops punctuation; no stemming ("cats" != "cat")
    assert metrics.rouge_l_f1("The CAT!", "the cat") == 1.0
    assert metrics.rouge_l_f1("cats", "cat") == 0.0


def test_cut_at_first_stop_string():
    assert metrics.cut_at_stop("Ghent\n\nQuestion: x") == "Ghent"
    assert metrics.cut_at_stop("Ghent\nQuestion: x") == "Ghent"
    assert metrics.cut_at_stop("Ghent Question: x") == "Ghent "
    assert metrics.cut_at_stop("Ghent and Lyon") == "Ghent and Lyon"


def test_icl_prompt_format():
    p = metrics.icl_prompt([{"question": "Q1?", "answer": "A1"}], "Q2?")
    assert p == "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: "


def test_min_k_takes_lowest_fraction():
    lp = [-0.1, -5.0, -0.2, -3.0, -0.3]
    assert metrics.min_k_score(lp, 0.4) == pytest.approx(4.0)  # int(5 * 0.4) = 2 lowest: -5, -3
    assert metrics.min_k_score([-2.0], 0.4) == pytest.approx(2.0)  # at least one token
    with pytest.raises(ValueError):
        metrics.min_k_score([], 0.4)


def test_mia_auc_muse_orientation():
    # memorised forget texts have low Min-K scores (high likelihood) -> AUC near 0 (MUSE's convention)
    assert metrics.mia_auc([0.1, 0.2], [2.0, 3.0]) == 0.0
    assert metrics.mia_auc([2.0, 3.0], [0.1, 0.2]) == 1.0
    assert metrics.mia_auc([1.0, 2.0], [1.5, 1.5]) == 0.5
    with pytest.raises(ValueError, match="need forget and holdout scores"):
        metrics.mia_auc([], [1.0])


@pytest.mark.parametrize("seed", range(5))
def test_mia_auc_equals_the_pairwise_definition_with_ties(seed):
    """AUC = P(holdout ranked above forget) + 1/2 P(tie), prediction -score (MUSE's labels), counted
    pair by pair: the definition sklearn's roc_auc_score implements, without installing sklearn (its
    mere presence slows every evaluation job, pyproject.toml)."""
    rng = np.random.default_rng(seed)
    forget = rng.integers(0, 12, size=rng.integers(1, 60)).astype(float) / 4  # coarse values: many ties
    holdout = rng.integers(2, 14, size=rng.integers(1, 60)).astype(float) / 4
    expected = np.mean([1.0 if h < f else 0.5 if h == f else 0.0 for f in forget for h in holdout])
    assert metrics.mia_auc(list(forget), list(holdout)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_privleak():
    assert metrics.privleak(0.4772, 0.4772) == 0.0
    assert metrics.privleak(0.0, 0.5) == -100.0
    assert metrics.privleak(0.75, 0.5) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        metrics.privleak(0.5, 0.0)


ARM = "unlearn/ga_gdr/alpha~1/lr~3e-05/epochs~40/loss~faithful"


def test_parse_eval_path():
    assert parse_eval_path("results/synth/eval/target/rtn4.json") == {
        "dataset": "synth",
        "model_id": "target",
        "model": "target",
        "method": "",
        "alpha": "",
        "selected": False,
        "lr": "",
        "epochs": "",
        "loss": "",
        "scheme": "rtn4",
    }
    mid = "unlearn/npo_gdr/alpha~2/lr~3e-05/epochs~1/loss~paper_code"
    assert parse_eval_path(f"results/d/eval/{mid}/fp32.json") == {
        "dataset": "d",
        "model_id": mid,
        "model": "unlearn",
        "method": "npo_gdr",
        "alpha": "2",
        "selected": False,
        "lr": "3e-05",
        "epochs": "1",
        "loss": "paper_code",
        "scheme": "fp32",
    }
    sel = "unlearn/npo_gdr/alpha~selected/lr~3e-05/epochs~1/loss~faithful"
    parsed = parse_eval_path(f"results/d/eval/{sel}/fp32.json", {("d", "npo_gdr"): 5.0})
    assert parsed["alpha"] == "5" and parsed["selected"] is True
    with pytest.raises(ValueError, match="no alpha selection"):
        parse_eval_path(f"results/d/eval/{sel}/fp32.json", {("e", "npo_gdr"): 5.0})
    with pytest.raises(ValueError, match="not a path of the form"):
        parse_eval_path("results/d/eval/other/fp32.json")
    with pytest.raises(ValueError, match="not a path of the form"):
        parse_eval_path("results/d/eval/unlearn/ga/alpha~1/rate~2/epochs~1/loss~faithful/fp32.json")


def _write_eval(root, model_id, scheme, m1, m2, m4, auc):
    path = root / "results" / "d" / "eval" / model_id / f"{scheme}.json"
    write_json_atomic(path, {"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4, "mia_auc": auc}})
    return str(path)


def test_long_metrics_privleak_and_retention_hand_checked(tmp_path):
    paths = [
        _write_eval(tmp_path, "target", "fp32", 0.8, 1.0, 1.0, 0.1),
        _write_eval(tmp_path, "target", "rtn4", 0.4, 0.5, 0.9, 0.1),
        _write_eval(tmp_path, "retrain", "fp32", 0.1, 0.2, 1.0, 0.5),
        _write_eval(tmp_path, "retrain", "rtn4", 0.1, 0.2, 1.0, 0.4),
        _write_eval(tmp_path, ARM, "fp32", 0.2, 0.3, 0.9, 0.6),
        _write_eval(tmp_path, ARM, "rtn4", 0.4, 0.45, 0.9, 0.2),
    ]
    cfg = ReportConfig(figure_schemes=["fp32", "rtn4"], utility_constrained=["ga_gdr"])
    df = long_metrics(paths, cfg)
    assert list(df.columns) == [
        "dataset",
        "model_id",
        "model",
        "method",
        "alpha",
        "selected",
        "lr",
        "epochs",
        "loss",
        "headline",
        "scheme",
        "metric",
        "value",
    ]
    get = lambda model, scheme, metric: df[
        (df.model == model) & (df.scheme == scheme) & (df.metric == metric)
    ].value.item()  # noqa: E731
    assert get("target", "fp32", "M1_VerbMem_f") == pytest.approx(80.0)
    # PrivLeak is relative to the retrain model at the reference scheme (fp32), for every scheme
    assert get("unlearn", "rtn4", "M3_PrivLeak") == pytest.approx((0.2 - 0.5) / 0.5 * 100)
    assert get("retrain", "fp32", "M3_PrivLeak") == 0.0
    ret = retention(df)
    assert list(ret.columns) == [
        "dataset",
        "model_id",
        "model",
        "method",
        "alpha",
        "selected",
        "lr",
        "epochs",
        "loss",
        "scheme",
        "retention",
    ]
    r = ret.set_index("scheme").retention
    assert r["fp32"] == pytest.approx((0.2 / 0.8 + 0.3 / 1.0) / 2)
    assert r["rtn4"] == pytest.approx((0.4 / 0.4 + 0.45 / 0.5) / 2)
    s = summary(df, ret, cfg)["d"]
    assert s["mean_retention_utility_constrained"]["rtn4"] == pytest.approx(0.95)
    assert s["target_m2_relative_to_full_precision"]["rtn4"] == pytest.approx(0.5)


def test_retention_is_nan_when_target_scores_zero_on_every_retention_metric():
    rows = []
    for model, v in (("target", 0.0), ("unlearn", 10.0)):
        for metric in ("M1_VerbMem_f", "M2_KnowMem_f"):
            u = model == "unlearn"
            rows.append(
                {
                    "dataset": "d",
                    "model_id": ARM if u else model,
                    "model": model,
                    "method": "ga" if u else "",
                    "alpha": "1" if u else "",
                    "selected": False,
                    "lr": "1" if u else "",
                    "epochs": "1" if u else "",
                    "loss": "faithful" if u else "",
                    "scheme": "fp32",
                    "metric": metric,
                    "value": v,
                }
            )
    assert math.isnan(retention(pd.DataFrame(rows)).retention.item())


def test_study_table_has_one_row_per_arm_with_metrics_and_retention_per_scheme(tmp_path):
    from qunlearn.report.studies import study_table

    lr_arm = "unlearn/ga_gdr/alpha~1/lr~0.001/epochs~40/loss~faithful"
    paths = [
        _write_eval(tmp_path, "target", "fp32", 0.8, 1.0, 1.0, 0.1),
        _write_eval(tmp_path, "target", "rtn4", 0.4, 0.5, 0.9, 0.1),
        _write_eval(tmp_path, "retrain", "fp32", 0.1, 0.2, 1.0, 0.5),
        _write_eval(tmp_path, ARM, "fp32", 0.2, 0.3, 0.9, 0.6),
        _write_eval(tmp_path, ARM, "rtn4", 0.4, 0.45, 0.9, 0.2),
        _write_eval(tmp_path, lr_arm, "fp32", 0.0, 0.1, 0.7, 0.6),
    ]
    df = long_metrics(paths, ReportConfig(figure_schemes=["fp32"]))
    table = study_table(df, retention(df), [("d", lr_arm), ("d", ARM)], ["lr"], ["fp32", "rtn4"])
    assert list(table.lr) == ["3e-05", "0.001"]  # sorted by value, not text
    assert list(table.columns) == [
        "dataset",
        "method",
        "lr",
        "fp32 M1",
        "fp32 M2",
        "fp32 M4",
        "fp32 ret",
        "rtn4 M1",
        "rtn4 M2",
        "rtn4 M4",
        "rtn4 ret",
    ]
    fast = table.iloc[1]
    assert fast["fp32 M4"] == pytest.approx(70.0) and fast["fp32 ret"] == pytest.approx((0 + 0.1) / 2)
    assert math.isnan(fast["rtn4 ret"])  # that arm was not evaluated at rtn4
