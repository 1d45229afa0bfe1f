rule quantize:
    """Calibrate and quantize one model with one calibrated scheme (GPTQ, AWQ): dense deployed
    weights + integer codes, cached on disk for evaluate and analysis."""
    input:
        model=lambda w: model_dir(w.dataset, w.model_id),
        data=lambda w: data_dir(w.dataset),
    output:
        directory(f"{RESULTS}/{{dataset}}/quant/{{model_id}}/{{scheme}}"),
    params:
        scheme=lambda w: as_json(plan.scheme_slice(config, w.scheme)),
        seed=SEED,
    wildcard_constraints:
        scheme=_alt([s for s in config["quantize"]["schemes"] if plan.is_calibrated(config, s)]),
    threads: THREADS
    resources:
        **job_resources("quantize"),
    log:
        "logs/quantize/{dataset}/{model_id}/{scheme}.log",
    benchmark:
        "benchmarks/quantize/{dataset}/{model_id}/{scheme}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/quantize.py"
