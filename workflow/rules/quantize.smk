rule quantize:
    """Calibrate and quantize one model with one calibrated scheme (GPTQ, AWQ): dense deployed
    weights + integer codes, cached on disk for evaluate and analysis."""
    input:
        model=lambda w: paths.model_dir(w.dataset, w.model_id),
        data=lambda w: EXP.data_dir(w.dataset),
    output:
        directory(paths.QUANT),
    log:
        paths.log_file("quantize", "{dataset}", "{model_id}", "{scheme}"),
    benchmark:
        paths.benchmark_file("quantize", "{dataset}", "{model_id}", "{scheme}")
    wildcard_constraints:
        scheme=_alt(EXP.calibrated_scheme_names()),
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("quantize"),
    params:
        scheme=lambda w: as_json(EXP.quantize_params(w.model_id, w.scheme)),
        seed=lambda w: EXP.model_seed(w.model_id),
    script:
        f"{SCRIPTS}/quantize.py"
