rule aggregate:
    """metrics.csv (long form), Table-1-style table, retention table, headline summary."""
    input:
        evals=eval_outputs(),
        selections=selection_files(),
    output:
        tables=[report_table(f"{RESULTS}/tables/{t}") for t in TABLES],
    params:
        report=as_json(plan.report_table_slice(config)),
        selections=as_json(selection_map()),
        headline=as_json(plan.headline_ids(config)),
        studies=as_json(plan.studies_for_report(config)),
    localrule: True  # tables from small JSON files
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/aggregate.py"


rule figures:
    """The figures, from metrics.csv, the lr-sweep table and the plot settings only (a plotting option
    reruns just this)."""
    input:
        metrics=f"{RESULTS}/tables/metrics.csv",
        lr_sweep=f"{RESULTS}/tables/lr_sweep.csv",
    output:
        figures=[report_figure(f"{RESULTS}/figures/{f}") for f in FIGURES],
    params:
        plot=as_json(plan.report_figure_slice(config)),
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/figures.py"


rule paper_assets:
    """Copy the regenerated tables and figures into paper/."""
    input:
        tables=[f"{RESULTS}/tables/{t}" for t in TABLES],
        figures=[f"{RESULTS}/figures/{f}" for f in FIGURES],
    output:
        tables=[f"paper/tables/{t}" for t in TABLES],
        figures=[f"paper/figures/{f}" for f in FIGURES],
    localrule: True
    log:
        "logs/paper_assets.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
