rule fetch_model:
    """A base taken as published (hub id or local path, datasets.<name>.pretrained.<base>): copied
    in the configured dtype with the dataset's tokenizer. Replaces train_base for that base."""
    input:
        data=f"{RESULTS}/{{dataset}}/data",
    output:
        directory(f"{RESULTS}/{{dataset}}/models/pretrained/{{base}}"),
    params:
        model=lambda w: as_json(plan.pretrained_base(config, w.dataset, w.base)),
    threads: 1
    resources:
        mem_mb=fetch_mem_mb,
        runtime=120,
    log:
        "logs/fetch_model/{dataset}/{base}.log",
    benchmark:
        "benchmarks/fetch_model/{dataset}/{base}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/fetch_model.py"
