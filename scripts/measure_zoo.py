#!/usr/bin/env python
"""One arm per method of configs/zoo.yaml on an existing tiny target, outside Snakemake: the
preparation (if the method has one), the unlearning at the method's first alpha, and the
evaluations at fp32 and rtn4; prints each method's M1, M2, M4 and forget retention
(mean of M1 and M2 relative to the target's evaluation at the same scheme).

    python scripts/measure_zoo.py selective_pruning task_vector [--set selective_pruning.mlp_fraction=0.1]

Needs results/synth/{data, models/target, eval/target/fp32.json, eval/target/rtn4.json} (made by
`snakemake --configfile configs/zoo.yaml results/synth/eval/target/rtn4.json`); writes under
results/synth like the workflow. Prints measurements of this machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time

import yaml

from qunlearn import deploy, paths, stages
from qunlearn.experiment import Experiment

R = "results/synth"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("methods", nargs="+")
    ap.add_argument("--configfile", default="configs/zoo.yaml")
    ap.add_argument("--set", action="append", default=[], help="method.setting=value (YAML value)")
    args = ap.parse_args()
    with open(args.configfile) as fh:
        cfg = yaml.safe_load(fh)
    for item in args.set:
        key, value = item.split("=", 1)
        method, setting = key.split(".", 1)
        cfg["unlearn"]["methods"][method][setting] = yaml.safe_load(value)
    exp = Experiment(cfg)
    target = f"{R}/models/target"
    for m in args.methods:
        arm = exp.headline_arm("synth", m).replace(alpha=str(exp.alphas(m)[0]))
        started = time.time()
        prepared = None
        if exp.method_specs[m].preparation:
            prepared = paths.prepared_dir("synth", m, exp.seed)
            prep = exp.prepare_params("synth", m)
            stages.prepare_method(target, f"{R}/data", prepared, prep, exp.max_length("synth"), exp.seed, 1, False)
        model_dir = paths.model_dir("synth", arm.model_id)
        params = exp.unlearn_params(arm)
        meta = stages.unlearn_model(
            target, f"{R}/data", model_dir, params, exp.max_length("synth"), exp.seed, 1, False, prepared_dir=prepared
        )
        out = {"seconds": round(time.time() - started, 1), "last_step": meta["history"]["epochs"][-1]}
        print(m, json.dumps(out), flush=True)
        # the merged model, then each deployment mode its spec declares (qunlearn.deploy)
        for mid in [arm.model_id] + [deploy.deploy_id(arm.model_id, d) for d in exp.method_specs[m].deployments]:
            if mid != arm.model_id:
                mode = dict(paths.parse_model_id(mid).settings)["mode"]
                deploy.write_deployment(model_dir, paths.model_dir("synth", mid), mode)
            print(m, mid, json.dumps(evaluate(exp, mid)), flush=True)


def evaluate(exp, mid: str) -> dict:
    out = {}
    for s in ("fp32", "rtn4"):
        ev = stages.evaluate_model(
            paths.model_dir("synth", mid),
            f"{R}/data",
            paths.eval_file("synth", mid, s),
            exp.scheme_params(s),
            exp.evaluate_params("synth"),
            exp.seed,
            1,
            scheme_name=s,
            progress=False,
        )["metrics"]
        with open(paths.eval_file("synth", "target", s)) as fh:
            t = json.load(fh)["metrics"]
        retention = 0.5 * (ev["verbmem_f"] / t["verbmem_f"] + ev["knowmem_f"] / t["knowmem_f"])
        out[s] = {"M1": ev["verbmem_f"], "M2": ev["knowmem_f"], "M4": ev["knowmem_r"], "retention": retention}
    return out


if __name__ == "__main__":
    main()
