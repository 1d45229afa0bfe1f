rule attack:
    """Apply one point of a recovery attack's grid (relearn, prune, noise, ...) to a model: its
    output is the derived model id derived/<attack>/<k>~<v>.../of/<parent>, which evaluate and
    quantize take like any other model."""
    input:
        unpack(lambda w: EXP.attack_inputs(w.dataset, derived_of(w))),
    output:
        directory(paths.MODEL.replace("{model_id}", paths.DERIVED)),
    log:
        paths.log_file("attack", "{dataset}", paths.DERIVED),
    benchmark:
        paths.benchmark_file("attack", "{dataset}", paths.DERIVED)
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("attack"),
    params:
        attack=lambda w: as_json(EXP.attack_params(derived_of(w))),
        max_length=lambda w: EXP.max_length(w.dataset),
        seed=lambda w: EXP.model_seed(derived_of(w)),
    script:
        f"{SCRIPTS}/attack.py"
