rule unlearn:
    """Unlearn D_f from the released target: one method, alpha (or the selected one), lr, epochs, loss."""
    input:
        unpack(unlearn_inputs),
    output:
        directory(f"{RESULTS}/{{dataset}}/models/unlearn/{ARM}"),
    params:
        unlearn=lambda w: as_json(plan.unlearn_slice(config, arm_of(w))),
        max_length=plan.stage_slice(config, "model", ModelConfig)["max_length"],
        seed=SEED,
    threads: THREADS
    resources:
        **job_resources("unlearn"),
    log:
        f"logs/unlearn/{{dataset}}/{ARM}.log",
    benchmark:
        f"benchmarks/unlearn/{{dataset}}/{ARM}.tsv"
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/unlearn.py"


rule select_alpha:
    """Pick the method's alpha from its grid (unlearn.alpha_selection); a single alpha passes through."""
    input:
        unpack(selection_inputs),
    output:
        f"{RESULTS}/{{dataset}}/selection/{{method}}.json",
    params:
        alphas=lambda w: as_json(plan.method_config(config, w.method).alphas),
        alphas_text=lambda w: plan.grid_alphas(config, w.method),
        selection=as_json(plan.alpha_selection_slice(config)),
    localrule: True
    log:
        "logs/select_alpha/{dataset}/{method}.log",
    conda:
        CONDA_ENV
    script:
        f"{SCRIPTS}/select_alpha.py"
