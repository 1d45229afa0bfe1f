rule unlearn:
    """Unlearn D_f from the released target with one method, alpha and lr."""
    input:
        base=f"{RESULTS}/{{dataset}}/models/target",
        data=lambda w: data_dir(w.dataset),
    output:
        directory(f"{RESULTS}/{{dataset}}/models/unlearn/{{method}}/alpha~{{alpha}}/lr~{{lr}}"),
    params:
        unlearn=lambda w: as_json(
            plan.unlearn_slice(config, plan.UnlearnJob(w.dataset, w.method, w.alpha, w.lr))
        ),
        max_length=plan.stage_slice(config, "model", ModelConfig)["max_length"],
        seed=SEED,
    threads: THREADS
    resources:
        **job_resources("unlearn"),
    log:
        "logs/unlearn/{dataset}/{method}/alpha~{alpha}/lr~{lr}.log",
    benchmark:
        "benchmarks/unlearn/{dataset}/{method}/alpha~{alpha}/lr~{lr}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/unlearn.py"
