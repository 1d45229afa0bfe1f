rule deploy:
    """A deployment mode of an arm whose method declares one (spec trait deployments): e.g. the
    quantized base with the full-precision adapter on top (qunlearn.deploy); its output is the
    derived model id derived/deploy/mode~<mode>/of/<arm>, evaluated at the arm's schemes."""
    input:
        unpack(lambda w: EXP.deploy_inputs(w.dataset, deploy_of(w))),
    output:
        directory(paths.MODEL.replace("{model_id}", DEPLOY_PATTERN)),
    log:
        paths.log_file("deploy", "{dataset}", DEPLOY_PATTERN),
    conda:
        CONDA_ENV
    params:
        mode=lambda w: EXP.deploy_params(deploy_of(w))["mode"],
        seed=lambda w: EXP.model_seed(deploy_of(w)),
    script:
        f"{SCRIPTS}/deploy.py"
