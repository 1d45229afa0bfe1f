"""`snakemake --report report.html` on the CI run: one self-contained HTML file with the tables and
figures as captioned report items, by category."""

import re

import pytest
from conftest import run_snakemake

from qunlearn.report import catalog

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
    # the captions come from the report catalog's caption files (first words, as rendered from rst)
    for kind, stem in (("table", "retention"), ("figure", "m1_m2_by_scheme")):
        first = " ".join(catalog.get(kind, stem).caption.split()[:3])
        assert first in html, first
