"""paper/: generated numbers and includes (unit), and `snakemake paper` -> main.pdf on the CI run (e2e)."""

import re
import shutil
import subprocess

import pandas as pd
import pytest
from conftest import ROOT, run_snakemake

from qunlearn.report import paper

SUMMARY = {
    "d": {
        "mean_retention_utility_constrained": {"fp32": 0.3498, "rtn4": 0.9157},
        "target_m2_relative_to_full_precision": {"fp32": 1.0, "rtn4": 0.95},
        "methods": ["ga_gdr", "npo_gdr"],
    }
}
RETENTION = [
    {"dataset": "d", "method": "ga_gdr", "alpha": "2", "lr": "3e-05", "scheme": "rtn4", "retention": 0.851},
    {"dataset": "d", "method": "npo", "alpha": "1", "lr": "3e-05", "scheme": "rtn4", "retention": 0.5},
    {"dataset": "d", "method": "npo", "alpha": "5", "lr": "3e-05", "scheme": "rtn4", "retention": 0.25},
]


def test_numbers_cover_the_summary_and_every_model():
    n = paper.numbers(SUMMARY, RETENTION)
    assert n["ret/d/fp32"] == "0.35" and n["ret/d/rtn4"] == "0.92"
    assert n["m2kept/d/rtn4"] == "0.95" and n["n/d/methods"] == "2"
    assert n["summary/d/mean_retention_utility_constrained/rtn4"] == "0.92"
    assert n["ret/d/ga_gdr/alpha=2/lr=3e-05/rtn4"] == "0.85" and n["ret/d/ga_gdr/rtn4"] == "0.85"
    # a method with several (alpha, lr) has no ambiguous short key
    assert n["ret/d/npo/alpha=5/lr=3e-05/rtn4"] == "0.25" and "ret/d/npo/rtn4" not in n


def test_macros_define_each_key_and_reject_unsafe_ones():
    tex = paper.macros_tex({"ret/d/ga_gdr/rtn4": "0.85"})
    assert r"\@namedef{qn@ret/d/ga_gdr/rtn4}{0.85}" in tex and r"\providecommand{\qn}" in tex
    with pytest.raises(ValueError, match="not allowed"):
        paper.macros_tex({"ret/d/alpha~2": "1"})


def test_includes_follow_the_workflow_lists():
    tables, figures = paper.includes(
        ["metrics.csv", "table1.tex", "new_table.tex"], {"f.png": "ignored", "f.pdf": "M1 and M2 per scheme_x"}
    )
    assert re.findall(r"\\input\{tables/(\w+)\}", tables) == ["table1", "new_table"]
    assert "figures/f.pdf" in figures and "figures/f.png" not in figures
    assert r"scheme\_x" in figures


def test_plot_csv_and_metrics_json():
    csv_text = paper.retention_plot_csv(SUMMARY, {"fp32": None, "rtn4": 4})
    assert csv_text.splitlines() == [
        "dataset_scheme,dataset,scheme,bits,retention",
        "d fp32,d,fp32,,0.3498",
        "d rtn4,d,rtn4,4,0.9157",
    ]
    assert paper.headline_metrics(SUMMARY)["d"]["retention"] == {"fp32": 0.3498, "rtn4": 0.9157}


def test_build_pdf_without_latex_names_the_install_script(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="install_latex.sh"):
        paper.build_pdf(ROOT / "paper" / "main.tex", tmp_path / "main.pdf")


def test_main_tex_types_no_number():
    body = (ROOT / "paper" / "main.tex").read_text()
    text = "\n".join(line.split("%")[0] for line in body.splitlines())
    text = re.sub(r"\\qn\{[^}]*\}|\\(?:usepackage|documentclass)(\[[^]]*\])?\{[^}]*\}|\\ref\{[^}]*\}", "", text)
    assert not re.findall(r"\d+\.\d+", text), "a decimal number is typed in paper/main.tex"


@pytest.mark.e2e
@pytest.mark.skipif(
    not (shutil.which("latexmk") and shutil.which("pdftotext")),
    reason="needs LaTeX and poppler-utils: bash scripts/install_latex.sh",
)
def test_snakemake_paper_builds_the_pdf_with_the_tables(ci_run):
    run_snakemake(ci_run, "paper")
    pdf = ci_run / "paper" / "main.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "??" not in text, "an undefined \\qn number"
    # every LaTeX table of the workflow is in, by its caption
    for tex in (ci_run / "paper" / "tables").glob("*.tex"):
        m = re.search(r"\\caption\{([^}]*)\}", tex.read_text())
        if m is None:  # a table with no rows in this config (e.g. rmu before a method of that name exists)
            assert "no rows" in tex.read_text(), tex
            continue
        caption = m.group(1)
        assert " ".join(caption.split()[:4]) in " ".join(text.split()), caption
    # numbers from the CSVs: the retention table and the abstract's headline
    ret = pd.read_csv(ci_run / "results/tables/retention.csv", keep_default_na=False)
    # the paper quotes a method's retention as the mean over its seeds (configs/ci.yaml has two)
    ga4 = ret[(ret.method == "ga_gdr") & (ret.scheme == "rtn4") & (ret.headline.astype(str) == "True")].retention.mean()
    assert f"{ga4:.2f}" in text
    summary = __import__("json").loads((ci_run / "results/tables/summary.json").read_text())
    headline = summary["synth"]["mean_retention_utility_constrained"]["rtn4"]
    assert f"{headline:.2f} after 4-bit" in " ".join(text.split())
