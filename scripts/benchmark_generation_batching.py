#!/usr/bin/env python
"""Generation batching in half precision: how many continuations differ from one-prompt-at-a-time
generation, and the wall time, for ``evaluate.half_precision_generation`` = padded | by_length |
per_item, on the VerbMem and KnowMem prompts of the default synthetic data.

    python scripts/benchmark_generation_batching.py [--model DIR] [--dtype bf16] [--repeats 2]

Without --model a tiny Llama of the default config's size is initialised at random (seed 0): the
continuations are then meaningless but the arithmetic (and so the batch dependence) is the same.
Also counts the VerbMem references longer than 127 text tokens (the items MUSE's BOS + 127
truncation changes). Prints measurements of this machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from qunlearn.config import EvalConfig, ModelConfig, SyntheticCorpusConfig, from_dict
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.evaluate import metrics
    from qunlearn.evaluate.generation import greedy_generate, model_max_length
    from qunlearn.models import build_tiny_llama, load_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    ecfg = from_dict(EvalConfig, cfg.get("evaluate"), "evaluate")
    data = Path(tempfile.mkdtemp()) / "data"
    write_corpus(from_dict(SyntheticCorpusConfig, cfg["datasets"]["synth"]["synthetic"]), data)
    texts = [t for s in ("forget", "retain1", "retain2", "holdout") for t in muse_format.read_texts(data, "raw", s)]
    tok = train_tokenizer(texts, cfg["datasets"]["synth"]["tokenizer"]["vocab_size"], data / "tokenizer")
    if args.model:
        model = load_model(args.model)
    else:
        model = build_tiny_llama(from_dict(ModelConfig, cfg.get("model"), "model"), tok, 0)
    model = model.to({"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]).eval()

    verbmem = muse_format.read_split(data, "verbmem", "forget")
    n = ecfg.verbmem_max_new_tokens
    long_refs = sum(len(tok(it["gt"], add_special_tokens=False)["input_ids"]) > n - 1 for it in verbmem)
    print(f"VerbMem items {len(verbmem)}; references longer than {n - 1} text tokens: {long_refs}")
    qa = muse_format.read_split(data, "knowmem", "forget_qa")
    icl = muse_format.read_split(data, "knowmem", "forget_qa_icl")
    sets = {
        "verbmem": ([it["prompt"] for it in verbmem], n),
        "knowmem_f": ([metrics.icl_prompt(icl, q["question"]) for q in qa], ecfg.knowmem_max_new_tokens),
    }
    for name, (prompts, new_tokens) in sets.items():
        outs, times = {}, {}
        for batching in ("per_item", "padded", "by_length"):
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                limit = model_max_length(model)
                outs[batching] = greedy_generate(
                    model, tok, prompts, new_tokens, ecfg.batch_size, max_length=limit, batching=batching
                )
                runs.append(time.perf_counter() - t0)
            times[batching] = min(runs)
        for batching in ("per_item", "padded", "by_length"):
            differ = sum(a != b for a, b in zip(outs[batching], outs["per_item"]))
            print(
                f"{name} ({len(prompts)} prompts, {new_tokens} new tokens, batch {ecfg.batch_size}, {args.dtype}): "
                f"{batching:9s} {times[batching]:6.2f} s (best of {args.repeats}), "
                f"{differ} continuations differ from per_item"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
