rule prepare_data:
    """MUSE-format splits and the tokenizer of one dataset (synthetic, or MUSE itself)."""
    output:
        directory(paths.DATA),
    log:
        paths.log_file("prepare_data", "{dataset}"),
    benchmark:
        paths.benchmark_file("prepare_data", "{dataset}")
    localrule: True  # cheap (synthetic) or a small download (MUSE: where the network is)
    conda:
        CONDA_ENV
    params:
        dataset=lambda w: as_json(EXP.data_params(w.dataset)),
    script:
        f"{SCRIPTS}/prepare_data.py"
