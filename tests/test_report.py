"""`snakemake --report report.html` on the CI run: one self-contained HTML file with the tables and
figures as captioned report items, by category."""

import re

import pytest

from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.e2e


def test_report_embeds_tables_figures_and_captions(ci_run, tmp_path):
    html_path = tmp_path / "report.html"
    run_snakemake(ci_run, "--report", str(html_path))
    html = html_path.read_text()
    assert not re.search(r"""<(?:script|link|img)[^>]+(?:src|href)=["']https?://""", html), "external resource"
    for category in ("2. Evaluations", "3. Tables", "4. Figures"):
        assert category in html, category
    for name in ("table1.tex", "retention.csv", "summary.json", "m1_m2_by_scheme.png"):
        assert name in html, name
    # the captions come from workflow/report/ (first words, as rendered from rst)
    for rst in ("tables/retention.rst", "figures/m1_m2_by_scheme.rst"):
        first = " ".join((ROOT / "workflow/report" / rst).read_text().split()[:3])
        assert first in html, first
