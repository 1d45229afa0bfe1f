# The headline and study tables, their figures, and their copies in paper/. Which files each rule
# makes, their captions and what they are drawn from: qunlearn.report.catalog.


rule aggregate:
    """metrics.csv (long form), Table-1-style table, retention table, headline summary, study tables."""
    input:
        evals=EXP.eval_files(attacked=False),
        selections=EXP.selection_files(),
    output:
        **rule_outputs("aggregate"),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    localrule: True  # tables from small JSON files
    conda:
        CONDA_ENV
    params:
        report=as_json(EXP.report_table_params()),
        selections=as_json(EXP.selection_map()),
        headline=as_json(EXP.headline_ids()),
        studies=as_json(EXP.studies_for_report()),
    script:
        f"{SCRIPTS}/aggregate.py"


rule figures:
    """The figures, from the tables and the plot settings only (a plotting option reruns just this)."""
    input:
        **catalog.table_inputs("figures", present=REPORT_CONDITIONS),
    output:
        **rule_outputs("figures"),
    log:
        "logs/figures.log",
    benchmark:
        "benchmarks/figures.tsv"
    conda:
        CONDA_ENV
    params:
        plot=as_json(EXP.report_figure_params()),
    script:
        f"{SCRIPTS}/figures.py"


rule paper_assets:
    """Copy the regenerated tables and figures into paper/."""
    input:
        list(catalog.paper_copies("aggregate", "figures", present=REPORT_CONDITIONS)),
    output:
        list(catalog.paper_copies("aggregate", "figures", present=REPORT_CONDITIONS).values()),
    log:
        "logs/paper_assets.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
