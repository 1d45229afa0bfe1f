rule prepare_data:
    """Synthetic MUSE-format corpus and its tokenizer."""
    output:
        directory(f"{RESULTS}/{{dataset}}/data"),
    params:
        dataset=lambda w: as_json(
            {k: v for k, v in config["datasets"][w.dataset].items() if k != "pretrained"}
        ),
    localrule: True  # cheap (synthetic) or a small download (MUSE: where the network is)
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/prepare_data.py"
