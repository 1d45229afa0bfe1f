# paper/: LaTeX sources generated from the results, and `snakemake paper` -> paper/main.pdf.
# The tables and figures themselves are copied by rule paper_assets (report.smk).

PAPER_MAIN = str(Path(workflow.basedir) / "paper" / "main.tex")  # committed; no number typed in it


rule paper_numbers:
    """macros.tex (every number main.tex quotes), metrics.json (DVC metrics), retention_by_scheme.csv (DVC plot)."""
    input:
        summary=f"{RESULTS}/tables/summary.json",
        retention=f"{RESULTS}/tables/retention.csv",
    output:
        macros="paper/macros.tex",
        metrics="paper/metrics.json",
        plot="paper/retention_by_scheme.csv",
    params:
        scheme_bits=as_json({s: v.get("bits") for s, v in config["quantize"]["schemes"].items()}),
    localrule: True
    log:
        "logs/paper_numbers.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/paper_numbers.py"


rule paper_includes:
    """tables.tex and figures.tex: one \\input per LaTeX table, one figure per PDF figure of TABLES/FIGURES."""
    output:
        tables="paper/tables.tex",
        figures="paper/figures.tex",
    params:
        tables=as_json(TABLES + QUANT_TABLES),
        figures=as_json({f: rst_caption(report_caption("figures", f)) for f in FIGURES + QUANT_FIGURES}),
    localrule: True
    log:
        "logs/paper_includes.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/paper_includes.py"


rule paper:
    """paper/main.pdf from paper/main.tex (needs LaTeX: scripts/install_latex.sh). `snakemake paper`."""
    input:
        main=PAPER_MAIN,
        sources=paper_outputs(),
    output:
        "paper/main.pdf",
    localrule: True
    log:
        "logs/paper.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/build_pdf.py"
