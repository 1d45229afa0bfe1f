rule unlearn:
    """Unlearn D_f from the released target: one method, alpha (or the selected one), lr, epochs, loss.
    unlearn_seeded: the same for a replicate with another seed of `seeds` (its id has seed~<n>)."""
    input:
        unpack(lambda w: EXP.unlearn_inputs(arm_of(w))),
    output:
        directory(paths.MODEL.replace("{model_id}", paths.ARM)),
    log:
        paths.log_file("unlearn", "{dataset}", paths.ARM),
    benchmark:
        paths.benchmark_file("unlearn", "{dataset}", paths.ARM)
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        **job_resources("unlearn"),
    params:
        unlearn=lambda w: as_json(EXP.unlearn_params(arm_of(w))),
        max_length=lambda w: EXP.max_length(w.dataset),
        seed=lambda w: EXP.model_seed(arm_of(w).model_id),
    script:
        f"{SCRIPTS}/unlearn.py"


use rule unlearn as unlearn_seeded with:
    output:
        directory(paths.MODEL.replace("{model_id}", paths.ARM_SEEDED)),
    log:
        paths.log_file("unlearn", "{dataset}", paths.ARM_SEEDED),
    benchmark:
        paths.benchmark_file("unlearn", "{dataset}", paths.ARM_SEEDED)


rule select_alpha:
    """Pick the method's alpha from its grid (unlearn.alpha_selection); a single alpha passes through."""
    input:
        unpack(lambda w: EXP.selection_inputs(w.dataset, w.method)),
    output:
        paths.SELECTION,
    log:
        paths.log_file("select_alpha", "{dataset}", "{method}"),
    localrule: True
    conda:
        CONDA_ENV
    params:
        alphas=lambda w: as_json(EXP.alphas(w.method)),
        alphas_text=lambda w: EXP.grid_alphas(w.method),
        selection=as_json(EXP.alpha_selection_params()),
    script:
        f"{SCRIPTS}/select_alpha.py"
