rule aggregate:
    """metrics.csv (long form), Table-1-style table, retention table, headline summary, figure."""
    input:
        evals=eval_outputs(),
    output:
        tables=[f"{RESULTS}/tables/{t}" for t in TABLES],
        figures=[f"{RESULTS}/figures/{f}" for f in FIGURES],
    params:
        report=as_json(plan.stage_slice(config, "report", ReportConfig)),
    localrule: True  # tables and figures from small JSON files
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/aggregate.py"


rule paper:
    """Copy the regenerated tables and figures into paper/."""
    input:
        tables=[f"{RESULTS}/tables/{t}" for t in TABLES],
        figures=[f"{RESULTS}/figures/{f}" for f in FIGURES],
    output:
        tables=[f"paper/tables/{t}" for t in TABLES],
        figures=[f"paper/figures/{f}" for f in FIGURES],
    localrule: True
    log:
        "logs/paper.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
