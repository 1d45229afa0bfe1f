rule evaluate:
    """Quantize one model with one scheme and compute M1-M4 with per-item outputs. Cheap schemes
    quantize on the fly; calibrated ones (GPTQ, AWQ) load the quantize rule's checkpoint."""
    input:
        model=lambda w: eval_model_input(w.dataset, w.model_id, w.scheme),
        data=lambda w: data_dir(w.dataset),
    output:
        report(
            f"{RESULTS}/{{dataset}}/eval/{{model_id}}/{{scheme}}.json",
            caption="../report/evaluate.rst",
            category="2. Evaluations",
            subcategory="{scheme}",
            labels={"dataset": "{dataset}", "model": "{model_id}", "scheme": "{scheme}"},
        ),
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
