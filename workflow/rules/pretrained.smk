rule fetch_model:
    """A base taken as published (hub id or local path, datasets.<name>.pretrained.<base>): copied
    in the configured dtype with the dataset's tokenizer. Replaces train_base for that base."""
    input:
        data=paths.DATA,
    output:
        directory(paths.PRETRAINED),
    log:
        paths.log_file("fetch_model", "{dataset}", "{base}"),
    benchmark:
        paths.benchmark_file("fetch_model", "{dataset}", "{base}")
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=fetch_mem_mb,
        runtime=120,
    params:
        model=lambda w: as_json(EXP.pretrained_base(w.dataset, w.base)),
    script:
        f"{SCRIPTS}/fetch_model.py"
