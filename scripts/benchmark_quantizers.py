#!/usr/bin/env python
"""Quantize time per scheme on one model (in process, after imports), and optionally how far the
bitsandbytes modules and their exact dequantized dense weights agree in evaluation.

    python scripts/benchmark_quantizers.py [--model results/synth/models/target] [--data results/synth/data]
                                           [--configfile config.yaml] [--repeats 3] [--compare-bnb]

Quantize time = from the loaded fp32 model (or, for bitsandbytes, from the model directory: bnb
quantizes while loading) to a model ready to run; for GPTQ/AWQ it is the calibration (oneshot) plus
writing back the deployed weights, not the job's Python start-up (see benchmarks/quantize/ for
whole-job times). Prints measurements of this machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="results/synth/models/target")
    ap.add_argument("--data", default="results/synth/data")
    ap.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--compare-bnb",
        action="store_true",
        help="evaluate each bnb scheme with the bnb modules and with dense dequantized weights",
    )
    args = ap.parse_args()

    import torch

    from qunlearn import runtime
    from qunlearn.data import muse_format
    from qunlearn.data.tokenizer import load_tokenizer
    from qunlearn.experiment import Experiment
    from qunlearn.models import load_model
    from qunlearn.quantize import implementation, load_quantized
    from qunlearn.quantize.llmc import calibration_texts

    config = yaml.safe_load(Path(args.configfile).read_text())
    runtime.seed_everything(0, args.threads)
    tok = load_tokenizer(args.model)
    t0 = time.time()
    import bitsandbytes  # noqa: F401
    import llmcompressor  # noqa: F401

    print(f"imports of bitsandbytes + llmcompressor: {time.time() - t0:.1f} s (once per job)")
    rows = []
    exp = Experiment(config)
    for name, scfg in exp.schemes.items():
        # quantizers with a `load` build the library's own modules while loading (bitsandbytes);
        # the others are applied to the dense model after loading it
        loads_itself = hasattr(implementation(scfg), "load")
        times = []
        for _ in range(args.repeats):
            if scfg.calibrated:
                s = scfg.resolved()
                texts = calibration_texts(
                    muse_format.read_texts(args.data, "raw", s["calibration_split"]),
                    s["calibration_samples"],
                    s["calibration_seed"],
                )
                model = load_model(args.model, device=torch.device("cpu"))
                t = time.time()
                implementation(scfg).calibrate(model, tok, texts, scfg)
            else:
                t = time.time()
                model, _ = load_quantized(args.model, scfg)
                if not loads_itself:
                    t_load = time.time()
                    load_model(args.model)
                    t += time.time() - t_load  # count the quantization, not the fp32 load
            times.append(time.time() - t)
        rows.append((name, scfg.quantizer, scfg.nominal_bits, statistics.median(times), min(times)))
    print(f"\nquantize time per scheme on {args.model} ({args.repeats} repeats, {args.threads} thread(s)):")
    print(f"{'scheme':<12}{'quantizer':<11}{'bits':>5}{'median_s':>10}{'min_s':>8}")
    for r in rows:
        print(f"{r[0]:<12}{r[1]:<11}{r[2]:>5}{r[3]:>10.3f}{r[4]:>8.3f}")

    if args.compare_bnb:
        from qunlearn.stages import evaluate_model

        ecfg = exp.evaluate_params()
        print(f"\nlibrary modules (bitsandbytes) vs dense dequantized weights, evaluation of {args.model}:")
        tmp = Path("/tmp") / "qunlearn_bnb_compare"
        for name, scfg in exp.schemes.items():
            if scfg.calibrated or not hasattr(implementation(scfg), "load"):
                continue
            outs = []
            for sim in (False, True):
                t = time.time()
                outs.append(
                    evaluate_model(
                        args.model,
                        args.data,
                        tmp / f"{name}_{sim}.json",
                        scfg.resolved(),
                        ecfg,
                        seed=0,
                        threads=args.threads,
                        scheme_name=name,
                        progress=False,
                        simulate=sim,
                    )
                )
                outs[-1]["_s"] = time.time() - t
            real, sim = outs
            same = total = 0
            for key in ("verbmem_f", "knowmem_f", "knowmem_r"):
                for a, b in zip(real["items"][key], sim["items"][key]):
                    same += a["output"] == b["output"]
                    total += 1
            mets = ", ".join(f"{k} {real['metrics'][k]:.4f}/{sim['metrics'][k]:.4f}" for k in real["metrics"])
            print(
                f"{name:<10} identical generations {same}/{total}; metrics bnb/dense: {mets}; "
                f"eval time {real['_s']:.1f} s / {sim['_s']:.1f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
