"""Peak memory per process and seconds per step of (sharded) unlearning at tiny scale, the numbers
of docs/guide/real-scale.md ("Measured at tiny scale"):

    PYTHONPATH=src .venv/bin/python scripts/benchmark_sharding.py [--method npo_gdr] [--epochs 1]

The default config's tiny model (ModelConfig defaults) and synthetic corpus, in a temporary
directory; the same unlearning job with unlearn.processes 1 and 2 (FSDP2 over gloo on the CPU),
the same effective batch, each run in a fresh process (so the peak RSS is the job's). Prints each
run's meta "scale" (processes, seconds per step, peak RSS of each process), the trainable state
each process holds, and the largest weight difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from qunlearn import runtime
from qunlearn.config import ModelConfig, SyntheticCorpusConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.models import build_tiny_llama, count_parameters, save_model
from qunlearn.stages import unlearn_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="npo_gdr")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--micro-batch-size", type=int, default=None)
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--run", nargs=2, metavar=("DIR", "CFG"), help=argparse.SUPPRESS)  # one run, internal
    args = ap.parse_args()
    if args.run:
        d, cfg = Path(args.run[0]), json.loads(args.run[1])
        n = cfg["processes"]
        meta = unlearn_model(d / "base", d, d / f"p{n}", cfg, max_length=256, seed=0, threads=n, progress=False)
        hist = meta["history"]
        print(json.dumps({"steps": hist["steps"], **meta["scale"], "local_state_mb": hist["local_state_mb"]}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_corpus(SyntheticCorpusConfig(), d)
        texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(d, "raw", s)]
        tok = train_tokenizer(texts, 2048, d / "tokenizer")
        runtime.seed_everything(0, 1)
        model = build_tiny_llama(ModelConfig(), tok, 0)
        print(f"tiny model: {count_parameters(model)} parameters (fp32)")
        save_model(model, tok, d / "base")
        cfg = {"method": args.method, "alpha": 1.0, "lr": 3e-5, "epochs": args.epochs, "batch_size": args.batch_size}
        if args.micro_batch_size:
            cfg["micro_batch_size"] = args.micro_batch_size
        weights = {}
        for n in args.processes:
            run = [sys.executable, __file__, "--run", str(d), json.dumps({**cfg, "processes": n})]
            print(subprocess.run(run, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            weights[n] = load_file(d / f"p{n}" / "model.safetensors")
        first, *rest = args.processes
        for n in rest:
            diff = max((weights[first][k] - weights[n][k]).abs().max().item() for k in weights[first])
            print(f"max |weight difference| {first} vs {n} processes: {diff:.3g}")


if __name__ == "__main__":
    main()
