rule aggregate_quant:
    """Quantizer tables and figures: GPTQ/AWQ table (paper Tables 2/3), retention per scheme and
    bits, weight-change table, retention-vs-bits and changed-codes-vs-bits figures."""
    input:
        metrics=f"{RESULTS}/tables/metrics.csv",
        analyses=analysis_outputs(),
    output:
        tables=[report_table(f"{RESULTS}/tables/{t}") for t in QUANT_TABLES],
        figures=[report_figure(f"{RESULTS}/figures/{f}") for f in QUANT_FIGURES],
    params:
        report=as_json(plan.stage_slice(config, "report", ReportConfig)),
        schemes=as_json(plan.scheme_table(config)),
    log:
        "logs/aggregate_quant.log",
    benchmark:
        "benchmarks/aggregate_quant.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/aggregate_quant.py"


rule paper_quant:
    """Copy the quantizer tables and figures into paper/."""
    input:
        tables=[f"{RESULTS}/tables/{t}" for t in QUANT_TABLES],
        figures=[f"{RESULTS}/figures/{f}" for f in QUANT_FIGURES],
    output:
        tables=[f"paper/tables/{t}" for t in QUANT_TABLES],
        figures=[f"paper/figures/{f}" for f in QUANT_FIGURES],
    localrule: True
    log:
        "logs/paper_quant.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
