rule evaluate:
    """Quantize one model with one scheme (on the fly for RTN) and compute M1-M4 with per-item outputs."""
    input:
        model=lambda w: model_dir(w.dataset, w.model_id),
        data=lambda w: data_dir(w.dataset),
    output:
        f"{RESULTS}/{{dataset}}/eval/{{model_id}}/{{scheme}}.json",
    params:
        scheme=lambda w: as_json(plan.scheme_slice(config, w.scheme)),
        evaluate=as_json(plan.stage_slice(config, "evaluate", EvalConfig)),
        seed=SEED,
    threads: THREADS
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate/{dataset}/{model_id}/{scheme}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{model_id}/{scheme}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/evaluate.py"
