rule train_base:
    """Train the target (forget + retain) or the retrain reference (retain only) until memorised."""
    input:
        data=f"{RESULTS}/{{dataset}}/data",
    output:
        directory(f"{RESULTS}/{{dataset}}/models/trained/{{base}}"),
    params:
        model=as_json(plan.stage_slice(config, "model", ModelConfig)),
        train=as_json(plan.stage_slice(config, "train", TrainConfig)),
        evaluate=as_json(plan.train_check_eval_slice(config)),
        seed=SEED,
    threads: THREADS
    resources:
        **job_resources("train_base"),
    log:
        "logs/train_base/{dataset}/{base}.log",
    benchmark:
        "benchmarks/train_base/{dataset}/{base}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/train_base.py"


rule release:
    """Publish a trained model, optionally snapped onto an RTN grid (datasets.<name>.release)."""
    input:
        trained=lambda w: trained_dir(w.dataset, w.base),
    output:
        directory(f"{RESULTS}/{{dataset}}/models/{{base}}"),
    params:
        release=lambda w: as_json(config["datasets"][w.dataset].get("release")),
    log:
        "logs/release/{dataset}/{base}.log",
    benchmark:
        "benchmarks/release/{dataset}/{base}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/release.py"
