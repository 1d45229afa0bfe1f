"""The bootstrap intervals of the tables (src/qunlearn/report/intervals.py) on hand-checkable cases."""

from pathlib import Path

import numpy as np
import pytest

from qunlearn.config import BootstrapConfig
from qunlearn.report import intervals as iv

CFG = BootstrapConfig(resamples=2000, seed=0, level=0.95)


def test_all_items_equal_gives_a_zero_width_interval():
    i = iv.metric_interval([np.full(40, 0.3)], CFG, scale=100)
    assert i.mean == pytest.approx(30.0) and i.lo == pytest.approx(30.0) and i.hi == pytest.approx(30.0)


def test_two_items_zero_and_one_span_the_whole_range():
    """Resampling {0, 1} twice gives means 0, 0.5, 1 with chances 1/4, 1/2, 1/4: the 95% interval is
    [0, 1] around the observed 0.5."""
    i = iv.metric_interval([np.array([0.0, 1.0])], CFG)
    assert (i.mean, i.lo, i.hi) == (0.5, 0.0, 1.0)


def test_the_interval_narrows_with_more_items():
    rng = np.random.default_rng(1)
    small = iv.metric_interval([rng.random(20)], CFG)
    large = iv.metric_interval([rng.random(2000)], CFG)
    assert large.hi - large.lo < (small.hi - small.lo) / 3
    assert small.lo < small.mean < small.hi


def test_seeds_are_resampled_too():
    """Two seeds, each with all items equal (0.2 and 0.4): the item draws change nothing, the seed
    draws give means 0.2, 0.3, 0.4 with chances 1/4, 1/2, 1/4, so the interval is [0.2, 0.4]."""
    i = iv.metric_interval([np.full(10, 0.2), np.full(10, 0.4)], CFG)
    assert i.mean == pytest.approx(0.3) and i.lo == pytest.approx(0.2) and i.hi == pytest.approx(0.4)


def test_retention_of_a_constant_ratio_is_exact():
    target = {"verbmem_f": np.linspace(0.2, 1.0, 30), "knowmem_f": np.linspace(0.5, 1.0, 30)}
    half = {k: v / 2 for k, v in target.items()}
    i = iv.retention_interval([half], target, CFG)
    assert i.mean == pytest.approx(0.5) and i.lo == pytest.approx(0.5) and i.hi == pytest.approx(0.5)


def test_paired_difference_cancels_what_the_schemes_share():
    """Items vary a lot, but 4 bits adds exactly 0.1 to every item's score: each scheme's retention
    has a wide interval, their paired difference none."""
    rng = np.random.default_rng(2)
    target = {"verbmem_f": np.ones(50), "knowmem_f": np.ones(50)}
    fp = {"verbmem_f": rng.random(50) * 0.5, "knowmem_f": rng.random(50) * 0.5}
    q = {k: v + 0.1 for k, v in fp.items()}
    out = iv.paired_retention([([fp], [q])], (target, target), CFG)
    assert out["a"].hi - out["a"].lo > 0.05 and out["b"].hi - out["b"].lo > 0.05
    d = out["difference"]
    assert d.mean == pytest.approx(0.1) and d.lo == pytest.approx(0.1) and d.hi == pytest.approx(0.1)


def test_the_bootstrap_is_deterministic_and_follows_its_seed():
    scores = [np.random.default_rng(3).random(30)]
    a, b = iv.metric_interval(scores, CFG), iv.metric_interval(scores, CFG)
    assert a == b
    other = iv.metric_interval(scores, BootstrapConfig(resamples=2000, seed=1))
    assert other.mean == a.mean and (other.lo, other.hi) != (a.lo, a.hi)


def test_item_scores_only_for_item_mean_metrics():
    ev = {
        "metrics": {"verbmem_f": 0.5, "knowmem_f": 0.25, "knowmem_r": 1.0, "mia_auc": 0.6},
        "items": {
            "verbmem_f": [{"score": 0.0}, {"score": 1.0}],
            "knowmem_f": [{"score": 0.5}, {"score": 0.5}],  # mean 0.5, not the recorded 0.25: left out
            "knowmem_r": [{"score": 1.0}],
            "privleak": {"forget_mink": [1.0], "holdout_mink": [0.0]},
        },
    }
    got = iv.item_scores(ev)
    assert set(got) == {"verbmem_f", "knowmem_r"} and list(got["verbmem_f"]) == [0.0, 1.0]


def _eval(root, model_id, scheme, m1, m2, m4):
    """An eval JSON whose items are m1/m2/m4 (lists: per-item scores) and whose metrics are their means."""
    from qunlearn.runtime import write_json_atomic

    path = root / "results" / "d" / "eval" / model_id / f"{scheme}.json"
    items = {k: [{"score": x} for x in v] for k, v in (("verbmem_f", m1), ("knowmem_f", m2), ("knowmem_r", m4))}
    metrics = {k: float(np.mean([i["score"] for i in v])) for k, v in items.items()}
    items["privleak"] = {"forget_mink": [1.0, 2.0], "holdout_mink": [0.0, 1.5]}
    write_json_atomic(path, {"metrics": {**metrics, "mia_auc": 0.75}, "items": items})
    return str(path)


def test_aggregate_folds_seeds_and_reports_intervals(tmp_path):
    """Two seeds of one arm: Table 1 shows their mean with an interval, intervals.csv says 2 seeds,
    the summary's headline difference is the mean of the seeds' differences (hand-computed)."""
    import json

    import pandas as pd

    from qunlearn.report import catalog
    from qunlearn.report.stages import aggregate

    arm = "unlearn/ga_gdr/alpha~1/lr~3e-05/epochs~40/loss~faithful"
    rep = "unlearn/ga_gdr/seed~1/alpha~1/lr~3e-05/epochs~40/loss~faithful"
    one = [1.0] * 4
    evals = [_eval(tmp_path, base, s, one, one, one) for base in ("target", "retrain") for s in ("fp32", "rtn4")] + [
        _eval(tmp_path, arm, "fp32", [0.2, 0.2, 0.4, 0.4], [0.0, 0.2, 0.4, 0.6], one),  # retention 0.3
        _eval(tmp_path, arm, "rtn4", [0.8, 0.8, 1.0, 1.0], [0.6, 0.8, 1.0, 1.0], one),  # 0.875
        _eval(tmp_path, rep, "fp32", [0.1] * 4, [0.1] * 4, one),  # 0.1
        _eval(tmp_path, rep, "rtn4", [0.7] * 4, [0.7] * 4, one),  # 0.7
    ]
    out = {k: str(tmp_path / "out" / v) for k, v in catalog.outputs("aggregate").items()}
    cfg = {"full_precision_scheme": "fp32", "privleak_reference_scheme": "fp32", "quantized_scheme": "rtn4"}
    cfg |= {"utility_constrained": ["ga_gdr"], "figure_schemes": ["fp32", "rtn4"]}
    aggregate(evals, cfg, out, headline_ids={"d": [arm, rep]}, studies={})
    t1 = pd.read_csv(out["table1_csv"])
    row = t1[(t1.row.str.startswith("GA_GDR")) & (t1.scheme == "fp32")].iloc[0]
    assert row["M1_VerbMem_f"] == pytest.approx(100 * (0.3 + 0.1) / 2) and row["seeds"] == 2
    assert row["M1_VerbMem_f lo"] < row["M1_VerbMem_f"] < row["M1_VerbMem_f hi"]
    assert len(t1) == 3 * 2  # target, retrain, one arm (its seeds folded) x 2 schemes
    assert "[" in open(out["table1_md"]).read()
    ivals = pd.read_csv(out["intervals_csv"], keep_default_na=False)
    assert set(ivals.model_id) == {"target", "retrain", arm}
    ret = ivals[(ivals.metric == "retention") & (ivals.scheme == "fp32")].iloc[0]
    assert float(ret["mean"]) == pytest.approx((0.3 + 0.1) / 2)
    s = json.load(open(out["summary_json"]))["d"]
    assert s["mean_retention_utility_constrained"]["rtn4"] == pytest.approx((0.875 + 0.7) / 2)
    h = s["headline_interval"]
    assert h["seeds"] == {"ga_gdr": 2}
    assert h["difference_quantized_minus_full_precision"]["mean"] == pytest.approx(((0.875 - 0.3) + (0.7 - 0.1)) / 2)
    d = h["difference_quantized_minus_full_precision"]
    assert d["lo"] <= d["mean"] <= d["hi"] and d["lo"] > 0  # 4 bits retains more in every draw
    # the figures draw the seed means with the intervals as error bars
    from qunlearn.config import ReportConfig, from_dict
    from qunlearn.report import figures
    from qunlearn.report.frame import read_metrics, seed_mean
    from qunlearn.report.quant import method_labels, retention_by_bits
    from qunlearn.report.stages import _with_retention_intervals, draw_figures
    from qunlearn.report.tables import retention

    figs = {k: str(tmp_path / "fig" / v) for k, v in catalog.outputs("figures").items()}
    draw_figures(out["metrics_csv"], out["lr_sweep_csv"], cfg, figs, out["intervals_csv"])
    schemes = {
        "fp32": {"quantizer": "none", "nominal_bits": 32},
        "rtn4": {"quantizer": "rtn", "bits": 4, "group_size": 128, "nominal_bits": 4},
    }
    quant = {k: str(tmp_path / "quant" / v) for k, v in catalog.outputs("aggregate_quant").items()}
    head = seed_mean(read_metrics(out["metrics_csv"]).query("headline").reset_index(drop=True))
    rb = retention_by_bits(retention(head), schemes, from_dict(ReportConfig, cfg))
    assert rb[(rb.method == "ga_gdr") & (rb.scheme == "fp32")].retention.item() == pytest.approx(0.2)
    rb = rb.assign(label=method_labels(rb), _order=rb.bits.rank(ascending=False), group_size=128)
    withiv = _with_retention_intervals(rb, out["intervals_csv"])
    figures.by_bits(withiv, "retention", "retention", "retention_vs_bits", quant, 60, fp_in_line=True)
    for path in [*figs.values(), quant["retention_vs_bits_png"]]:
        assert Path(path).stat().st_size > 1000, path
    one = withiv[(withiv.method == "ga_gdr") & (withiv.scheme == "fp32")].iloc[0]
    assert one.lo < 0.2 < one.hi


def test_paper_macros_quote_the_mean_over_seeds():
    from qunlearn.report.paper import numbers

    arm = "unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
    rep = "unlearn/ga_gdr/seed~1/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
    row = {"dataset": "d", "method": "ga_gdr", "alpha": "2", "lr": "3e-05", "scheme": "fp32", "headline": "True"}
    rows = [{**row, "model_id": arm, "retention": 0.2}, {**row, "model_id": rep, "retention": 0.4}]
    values = numbers({}, rows)
    assert values["ret/d/ga_gdr/fp32"] == "0.30" and values["ret/d/ga_gdr/alpha=2/lr=3e-05/fp32"] == "0.30"
    assert numbers({}, rows[:1])["ret/d/ga_gdr/fp32"] == "0.20"
