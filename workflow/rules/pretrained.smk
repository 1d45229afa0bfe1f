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


rule fetch_external:
    """An unlearned model made elsewhere (datasets.<name>.external.<external>): a checkpoint copied,
    or a peft adapter merged into the released target, as a dense safetensors checkpoint with the
    dataset's tokenizer, after checking its files, architecture and tokenizer against the target's
    (qunlearn.external). evaluate, quantize and analysis then take external/<external> like an arm."""
    input:
        unpack(lambda w: EXP.external_inputs(w.dataset, w.external)),
    output:
        directory(paths.MODEL.replace("{model_id}", "external/{external}")),
    log:
        paths.log_file("fetch_external", "{dataset}", "{external}"),
    benchmark:
        paths.benchmark_file("fetch_external", "{dataset}", "{external}")
    wildcard_constraints:
        external=_alt(EXP.external_names()),
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=external_mem_mb,
        runtime=120,
    params:
        model=lambda w: as_json(EXP.external_params(w.dataset, w.external)),
    script:
        f"{SCRIPTS}/fetch_external.py"
