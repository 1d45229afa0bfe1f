rule prepare_data:
    """Synthetic MUSE-format corpus and its tokenizer."""
    output:
        directory(f"{RESULTS}/{{dataset}}/data"),
    params:
        dataset=lambda w: as_json(config["datasets"][w.dataset]),
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/prepare_data.py"
