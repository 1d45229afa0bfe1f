"""Time one model-size study's sizes on this machine, before running it (docs "Scale study").

For each distinct model among a config's trained datasets: CPU seconds per training epoch of the
target (forget + retain data, ``train`` section's batch size), seconds per unlearning step (GA_GDR
and NPO_KLR: without and with the frozen reference) and seconds per evaluation (fp32 and rtn4), on
a model of that shape trained for ``--epochs`` epochs (the cost of a step does not depend on the
weights; ``--memorise``: trained until memorised as rule train_base trains it, which also gives the
training's length and time), with the config's ``threads``. Outside Snakemake, in a temporary
directory:

    PYTHONPATH=$PWD/src .venv/bin/python scripts/probe_scale.py configs/scale-study.yaml --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from qunlearn import stages
from qunlearn.config import TrainConfig, from_dict, to_dict
from qunlearn.experiment import Experiment
from qunlearn.resources import tiny_llama_params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("configfile")
    ap.add_argument("--epochs", type=int, default=2, help="training epochs timed per size")
    ap.add_argument("--unlearn-epochs", type=int, default=1, help="unlearning epochs timed per method")
    ap.add_argument("--methods", nargs="+", default=["ga_gdr", "npo_klr"])
    ap.add_argument("--schemes", nargs="+", default=["fp32", "rtn4"])
    ap.add_argument("--only", nargs="+", help="these datasets' sizes only (default: every size)")
    ap.add_argument(
        "--memorise",
        action="store_true",
        help="train each target as rule train_base does, until memorised (the real training time), "
        "then time unlearning and evaluation on it",
    )
    args = ap.parse_args()
    with open(args.configfile) as fh:
        exp = Experiment(yaml.safe_load(fh))
    import torch

    from qunlearn.batching import encode_documents
    from qunlearn.data.tokenizer import load_tokenizer
    from qunlearn.models import build_tiny_llama, save_model
    from qunlearn.train import train_until_memorised

    root = Path(tempfile.mkdtemp(prefix="probe-scale-"))
    models, data = {}, {}
    for ds in exp.datasets:
        if exp.trains_bases(ds) and exp.owner(ds) == ds and (not args.only or ds in args.only):
            models.setdefault(json.dumps(exp.model_params(ds), sort_keys=True), ds)
    print(f"load average {os.getloadavg()}; threads {exp.threads}; in {root}", flush=True)
    for key, ds in models.items():
        data_key = json.dumps(exp.data_params(ds), sort_keys=True)
        if data_key not in data:
            started = time.time()
            data[data_key] = root / f"data-{len(data)}"
            stages.prepare_data(exp.data_params(ds), data[data_key], ds)
            print(f"prepare_data {ds}: {time.time() - started:.1f} s", flush=True)
        data_dir = data[data_key]
        torch.set_num_threads(exp.threads)
        model_cfg = exp.model_of(ds)
        tok = load_tokenizer(data_dir / "tokenizer")
        texts = stages._base_texts(data_dir, "target")
        row = {
            "dataset": ds,
            "model": json.loads(key),
            "params": tiny_llama_params(json.loads(key), len(tok)),
            "train_examples": len(encode_documents(tok, texts, model_cfg.max_length)),
        }
        target = root / f"target-{ds}"
        cpu = time.process_time()
        if args.memorise:
            started = time.time()
            meta = stages.train_base(
                "target",
                data_dir,
                target,
                exp.model_params(ds),
                exp.train_params(),
                exp.train_check_eval_params(),
                exp.seed,
                exp.threads,
                False,
            )
            history = meta["history"]
            row["train_epochs"] = history["epochs"]
            row["memorised_at_epoch"] = history["memorised_at_epoch"]
            row["last_check"] = history["checks"][-1] if history["checks"] else None
            row["train_cpu_s"] = round(time.process_time() - cpu, 1)
            row["train_wall_s"] = round(time.time() - started, 1)
        else:
            model = build_tiny_llama(model_cfg, tok, exp.seed)
            tcfg = from_dict(TrainConfig, {**to_dict(exp.train), "max_epochs": args.epochs, "check_every": 10**6})
            train_until_memorised(model, tok, texts, {}, tcfg, exp.seed, model_cfg.max_length, progress=False)
            row["train_cpu_s_per_epoch"] = round((time.process_time() - cpu) / args.epochs, 2)
            save_model(model, tok, target)
        for m in args.methods:
            arm = exp.headline_arm(ds, m).replace(alpha="1", epochs=str(args.unlearn_epochs))
            params = exp.unlearn_params(arm)
            started = time.time()
            meta = stages.unlearn_model(
                target, data_dir, root / f"unlearn-{ds}-{m}", params, model_cfg.max_length, exp.seed, exp.threads, False
            )
            row[f"unlearn_{m}_s_per_step"] = meta["scale"]["seconds_per_step"]
            row[f"unlearn_{m}_steps_per_epoch"] = meta["history"]["steps"] // args.unlearn_epochs
            row[f"unlearn_{m}_job_s"] = round(time.time() - started, 1)
        for s in args.schemes:
            started = time.time()
            stages.evaluate_model(
                target,
                data_dir,
                root / f"eval-{ds}-{s}.json",
                exp.scheme_params(s),
                exp.evaluate_params(ds),
                exp.seed,
                exp.threads,
                s,
                False,
            )
            row[f"evaluate_{s}_s"] = round(time.time() - started, 1)
        print(json.dumps(row), flush=True)
    print(f"load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
