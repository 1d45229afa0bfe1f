rule analysis:
    """Weight change of one model vs its released target, one JSON per scheme it is evaluated at:
    cosine, relative L2, fraction of changed quantized codes (overall, per module type, per layer).
    One job per model (the weights are loaded once; the per-scheme work is ~0.1 s)."""
    input:
        unpack(lambda w: EXP.analysis_inputs(w.dataset, w.model_id)),
    output:
        directory(paths.ANALYSIS),
    log:
        paths.log_file("analysis", "{dataset}", "{model_id}"),
    benchmark:
        paths.benchmark_file("analysis", "{dataset}", "{model_id}")
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        mem_mb=2000,
    params:
        schemes=lambda w: as_json(EXP.analysis_params(w.dataset, w.model_id)),
        # order-free
        calibrated=lambda w: as_json(sorted(EXP.calibrated_schemes(w.dataset, w.model_id))),
    script:
        f"{SCRIPTS}/analysis.py"
