# paper/: LaTeX sources generated from the results, and `snakemake paper` -> paper/main.pdf.
# The tables and figures themselves are copied by rule paper_assets (report.smk).

PAPER_MAIN = str(Path(workflow.basedir) / "paper" / "main.tex")  # committed; no number typed in it


rule paper_numbers:
    """macros.tex (every number main.tex quotes), metrics.json (DVC metrics), retention_by_scheme.csv (DVC plot)."""
    input:
        summary=catalog.get("table", "summary").path("json"),
        retention=catalog.get("table", "retention").path("csv"),
        robust=catalog.get("table", "robust_retention").path("csv"),
    output:
        **{k: catalog.PAPER_SOURCES[k] for k in ("macros", "metrics", "plot")},
    log:
        "logs/paper_numbers.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        scheme_bits=as_json(EXP.scheme_bits()),
    script:
        f"{SCRIPTS}/paper_numbers.py"


rule paper_includes:
    """tables.tex and figures.tex: one \\input per LaTeX table, one figure per PDF figure of the report catalog."""
    output:
        **{k: catalog.PAPER_SOURCES[k] for k in ("tables", "figures")},
    log:
        "logs/paper_includes.log",
    localrule: True
    conda:
        CONDA_ENV
    params:
        tables=as_json(catalog.files("table", REPORT_CONDITIONS)),
        figures=as_json(catalog.captions("figure", REPORT_CONDITIONS)),  # a caption edit reruns this
    script:
        f"{SCRIPTS}/paper_includes.py"


rule paper:
    """paper/main.pdf from paper/main.tex (needs LaTeX: scripts/install_latex.sh). `snakemake paper`."""
    input:
        main=PAPER_MAIN,
        sources=paper_outputs(),
    output:
        "paper/main.pdf",
    log:
        "logs/paper.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/build_pdf.py"
