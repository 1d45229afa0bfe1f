rule prepare_method:
    """A method's preparatory model (spec trait `preparation`, e.g. the task vector's fine-tune on
    D_f), once per dataset, method and seed: every arm of the method (each alpha) takes it as an
    input, so changing alpha does not redo it."""
    input:
        unpack(lambda w: EXP.prepare_inputs(w.dataset)),
    output:
        directory(paths.PREPARED),
    log:
        paths.log_file("prepare_method", "{dataset}", "{method}", "seed~{seed}"),
    benchmark:
        paths.benchmark_file("prepare_method", "{dataset}", "{method}", "seed~{seed}")
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("prepare_method"),
    params:
        prepare=lambda w: as_json(EXP.prepare_params(w.dataset, w.method)),
        max_length=lambda w: EXP.max_length(w.dataset),
    script:
        f"{SCRIPTS}/prepare_method.py"
