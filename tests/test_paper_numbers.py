"""The paper's own Table 1 (../shared/spec/paper.md section 6, arXiv v1) through the project's
retention code: per dataset and the mean over datasets, against the paper's headline (21% of the
forget knowledge retained at full precision, 83% at 4 bits, the mean over NEWS and BOOKS)."""

import json

import pandas as pd
import pytest

from qunlearn.config import ReportConfig
from qunlearn.report import paper
from qunlearn.report.frame import LONG_COLUMNS, column
from qunlearn.report.tables import MEAN_OVER_DATASETS, retention, summary

# model -> (M1, M2, M3, M4) per dataset at full precision ("bf16") and 4 bits ("bnb_fp4")
TABLE1 = {
    "news": {
        ("target", "bf16"): (58.4, 63.9, -99.8, 55.2),
        ("target", "bnb_fp4"): (34.2, 54.4, -99.8, 48.2),
        ("ga_gdr", "bf16"): (0.0, 28.9, 87.1, 34.2),
        ("ga_gdr", "bnb_fp4"): (25.0, 50.1, -99.1, 47.7),
        ("ga_klr", "bf16"): (14.1, 27.1, -91.6, 23.1),
        ("ga_klr", "bnb_fp4"): (33.8, 50.9, -99.8, 45.8),
        ("npo_gdr", "bf16"): (0.3, 46.1, 107.2, 38.6),
        ("npo_gdr", "bnb_fp4"): (33.2, 51.4, -99.8, 48.2),
    },
    "books": {
        ("target", "bf16"): (99.8, 59.4, -57.5, 66.9),
        ("target", "bnb_fp4"): (85.3, 36.8, -60.1, 50.5),
        ("ga_gdr", "bf16"): (0.0, 2.9, -56.5, 44.2),
        ("ga_gdr", "bnb_fp4"): (17.9, 33.7, -35.2, 51.9),
        ("ga_klr", "bf16"): (13.0, 15.1, -40.8, 33.7),
        ("ga_klr", "bnb_fp4"): (75.6, 34.6, -60.0, 51.3),
        ("npo_gdr", "bf16"): (0.4, 13.4, -42.6, 58.6),
        ("npo_gdr", "bnb_fp4"): (66.0, 31.9, -60.8, 53.2),
    },
}
KEYS = ("verbmem_f", "knowmem_f", "privleak", "knowmem_r")


def _frame() -> pd.DataFrame:
    rows = []
    for ds, table in TABLE1.items():
        for (model, scheme), values in table.items():
            base = model == "target"
            key = {
                "dataset": ds,
                "model_id": model if base else f"unlearn/{model}",
                "model": "target" if base else "unlearn",
                "method": "" if base else model,
                "alpha": "" if base else "5",
                "selected": not base,
                "lr": "" if base else "1e-05",
                "epochs": "" if base else "10",
                "loss": "" if base else "faithful",
                "headline": True,
                "scheme": scheme,
            }
            for k, v in zip(KEYS, values):
                name = "M3_PrivLeak" if k == "privleak" else column(k)
                rows.append({**key, "metric": name, "value": v})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


@pytest.fixture(scope="module")
def paper_summary():
    cfg = ReportConfig(
        full_precision_scheme="bf16",
        privleak_reference_scheme="bf16",
        utility_constrained=["ga_gdr", "ga_klr", "npo_gdr", "npo_klr"],
    )
    df = _frame()
    return summary(df, retention(df), cfg)


def test_each_dataset_alone_gives_what_the_issue_computed(paper_summary):
    news = paper_summary["news"]["mean_retention_utility_constrained"]
    books = paper_summary["books"]["mean_retention_utility_constrained"]
    assert round(100 * news["bf16"], 1) == 30.7 and round(100 * news["bnb_fp4"], 1) == 91.5
    assert round(100 * books["bf16"], 1) == 11.0 and round(100 * books["bnb_fp4"], 1) == 76.5


def test_mean_over_datasets_is_the_papers_headline(paper_summary):
    """The paper says 21% and 83%; its Table 1 (three of the four utility-constrained methods: no
    NPO_KLR row) gives 20.9% and 84.0%: full precision rounds to the paper's 21%, 4 bits is one
    point high (docs/science.md, "The paper's headline through our code")."""
    mean = paper_summary[MEAN_OVER_DATASETS]
    assert mean["datasets"] == ["books", "news"]
    ret = mean["mean_retention_utility_constrained"]
    assert round(100 * ret["bf16"], 1) == 20.9 and round(100 * ret["bf16"]) == 21
    assert round(100 * ret["bnb_fp4"], 1) == 84.0
    assert abs(100 * ret["bnb_fp4"] - 83) <= 1.05
    m2 = mean["target_m2_relative_to_full_precision"]
    assert m2["bnb_fp4"] == pytest.approx((54.4 / 63.9 + 36.8 / 59.4) / 2)


def test_the_mean_reaches_the_macros_and_dvc_metrics(paper_summary):
    summary_json = json.loads(json.dumps(paper_summary))
    values = paper.numbers(summary_json, [])
    assert values[f"ret/{MEAN_OVER_DATASETS}/bf16"] == "0.21"
    assert values[f"ret/{MEAN_OVER_DATASETS}/bnb_fp4"] == "0.84"
    dvc = paper.headline_metrics(summary_json)[MEAN_OVER_DATASETS]
    assert dvc["retention"]["bf16"] == pytest.approx(0.209, abs=5e-4)


def test_one_dataset_has_no_mean():
    df = _frame()
    df = df[df.dataset == "news"]
    cfg = ReportConfig(full_precision_scheme="bf16", privleak_reference_scheme="bf16")
    assert MEAN_OVER_DATASETS not in summary(df, retention(df), cfg)
