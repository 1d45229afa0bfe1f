rule analysis:
    """Weight change of one unlearned model vs its released target, one JSON per scheme of its
    dataset: cosine, relative L2, fraction of changed quantized codes (overall, per module type,
    per layer). One job per model (the weights are loaded once; the per-scheme work is ~0.1 s)."""
    input:
        unpack(analysis_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/analysis/{{model_id}}"),
    params:
        schemes=lambda w: as_json(
            {s: plan.scheme_slice(config, s) for s in model_schemes(w.dataset, w.model_id)}
        ),
        calibrated=lambda w: as_json(sorted(calibrated_schemes(w.dataset, w.model_id))),  # order-free
    threads: THREADS
    resources:
        mem_mb=2000,
    log:
        "logs/analysis/{dataset}/{model_id}.log",
    benchmark:
        "benchmarks/analysis/{dataset}/{model_id}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/analysis.py"
