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
        scheme=lambda w: as_json(EXP.scheme_params(w.scheme)),
        seed=SEED,
    script:
        f"{SCRIPTS}/quantize.py"
