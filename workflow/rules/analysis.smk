rule analysis:
    """Weight change of one unlearned model vs its released target under one scheme: cosine,
    relative L2, fraction of changed quantized codes (overall, per module type, per layer)."""
    input:
        unpack(analysis_inputs),
    output:
        f"{RESULTS}/{{dataset}}/analysis/{{model_id}}/{{scheme}}.json",
    params:
        scheme=lambda w: as_json(plan.scheme_slice(config, w.scheme)),
    threads: THREADS
    resources:
        mem_mb=2000,
    log:
        "logs/analysis/{dataset}/{model_id}/{scheme}.log",
    benchmark:
        "benchmarks/analysis/{dataset}/{model_id}/{scheme}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/analysis.py"
