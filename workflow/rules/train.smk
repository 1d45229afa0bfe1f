rule train_base:
    """Train the target (forget + retain) or the retrain reference (retain only) until memorised."""
    input:
        data=paths.DATA,
    output:
        directory(paths.TRAINED),
    log:
        paths.log_file("train_base", "{dataset}", "{base}"),
    benchmark:
        paths.benchmark_file("train_base", "{dataset}", "{base}")
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("train_base"),
    params:
        model=lambda w: as_json(EXP.model_params(w.dataset)),
        train=as_json(EXP.train_params()),
        evaluate=as_json(EXP.train_check_eval_params()),
        seed=SEED,
    script:
        f"{SCRIPTS}/train_base.py"


rule release:
    """Publish a trained model, optionally snapped onto an RTN grid (datasets.<name>.release)."""
    input:
        trained=lambda w: EXP.trained_dir(w.dataset, w.base),
    output:
        directory(paths.MODEL.replace("{model_id}", "{base}")),
    log:
        paths.log_file("release", "{dataset}", "{base}"),
    benchmark:
        paths.benchmark_file("release", "{dataset}", "{base}")
    conda:
        CONDA_ENV
    params:
        release=lambda w: as_json(EXP.release_params(w.dataset)),
    script:
        f"{SCRIPTS}/release.py"
