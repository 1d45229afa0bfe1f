rule aggregate_quant:
    """Quantizer tables and figures: GPTQ/AWQ table (paper Tables 2/3), retention per scheme and
    bits, weight-change table, the zoo and model-size-study tables, with a quantization-aware method
    the qa_comparison table, retention-vs-bits, changed-codes-vs-bits and retention-vs-size figures
    (declared in qunlearn.report.catalog)."""
    input:
        **catalog.table_inputs("aggregate_quant", present=REPORT_CONDITIONS),
        analyses=EXP.analysis_dirs(),
    output:
        **rule_outputs("aggregate_quant"),
    log:
        "logs/aggregate_quant.log",
    benchmark:
        "benchmarks/aggregate_quant.tsv"
    conda:
        CONDA_ENV
    params:
        report=as_json(EXP.report_params()),
        schemes=as_json(EXP.scheme_table()),
        qa=as_json(EXP.qa_comparison_for_report()),
        scale=as_json(EXP.scale_study()),  # the model-size study's datasets ({}: none)
    script:
        f"{SCRIPTS}/aggregate_quant.py"


rule paper_quant:
    """Copy the quantizer tables and figures into paper/."""
    input:
        list(catalog.paper_copies("aggregate_quant", present=REPORT_CONDITIONS)),
    output:
        list(catalog.paper_copies("aggregate_quant", present=REPORT_CONDITIONS).values()),
    log:
        "logs/paper_quant.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
