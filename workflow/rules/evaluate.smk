rule evaluate:
    """Quantize one model with one scheme and compute every metric with per-item outputs. Cheap
    schemes quantize on the fly; calibrated ones (GPTQ, AWQ) load the quantize rule's checkpoint."""
    input:
        model=lambda w: EXP.eval_model_input(w.dataset, w.model_id, w.scheme),
        data=lambda w: EXP.data_dir(w.dataset),
    output:
        report(
            paths.EVAL,
            caption="../report/evaluate.rst",
            category="2. Evaluations",
            subcategory="{scheme}",
            labels={"dataset": "{dataset}", "model": "{model_id}", "scheme": "{scheme}"},
        ),
    log:
        paths.log_file("evaluate", "{dataset}", "{model_id}", "{scheme}"),
    benchmark:
        paths.benchmark_file("evaluate", "{dataset}", "{model_id}", "{scheme}")
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("evaluate"),
    params:
        scheme=lambda w: as_json(EXP.quantize_params(w.model_id, w.scheme)),
        evaluate=lambda w: as_json(EXP.evaluate_params(w.dataset)),
        seed=lambda w: EXP.model_seed(w.model_id),
    script:
        f"{SCRIPTS}/evaluate.py"
