rule aggregate_attacks:
    """Recovery-attack tables: recovery with the re-teaching control, robust retention (declared in
    qunlearn.report.catalog; no rows when no attack is configured; rule figures draws the curves)."""
    input:
        evals=EXP.attack_report_evals(),
        data=sorted({EXP.data_dir(ds) for ds in EXP.attack_datasets()}) if EXP.attacks.runs else [],
    output:
        **rule_outputs("aggregate_attacks"),
    log:
        "logs/aggregate_attacks.log",
    benchmark:
        "benchmarks/aggregate_attacks.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        attacks=as_json(EXP.attacks_for_report()),
        headline=as_json(EXP.attacked_headlines()),
        data_dirs=as_json({ds: EXP.data_dir(ds) for ds in EXP.attack_datasets()} if EXP.attacks.runs else {}),
        report=as_json(EXP.report_table_params()),
        schemes=as_json({s: EXP.scheme_table()[s] for s in EXP.attack_table_schemes()}),
    script:
        f"{SCRIPTS}/aggregate_attacks.py"


rule paper_attacks:
    """Copy the recovery-attack tables and figure into paper/."""
    input:
        list(catalog.paper_copies("aggregate_attacks", present=REPORT_CONDITIONS)),
    output:
        list(catalog.paper_copies("aggregate_attacks", present=REPORT_CONDITIONS).values()),
    log:
        "logs/paper_attacks.log",
    localrule: True
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/copy_files.py"
