"""Do two CPU set-ups give the same bits? A few AdamW steps of the tiny Llama on a data directory's
target texts; run it once per set-up (environment variables such as ATEN_CPU_CAPABILITY, MKL_CBWR,
DNNL_MAX_CPU_ISA are read by torch and MKL at start) and compare the saved weights.

    python scripts/determinism_probe.py DATA_DIR a.safetensors                      # pinned (qunlearn.jobs)
    ATEN_CPU_CAPABILITY=avx512 python scripts/determinism_probe.py DATA_DIR b.safetensors
    python scripts/determinism_probe.py --compare a.safetensors b.safetensors       # max |dw|

DATA_DIR is a prepared dataset (results/<dataset>/data). docs: Measurements, "Reproducibility
across CPUs".
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import qunlearn.jobs  # noqa: F401  (the CPU kernel pins, as in every workflow job)


def train(args) -> None:
    import torch
    from safetensors.torch import save_file

    from qunlearn import runtime
    from qunlearn.batching import collate, encode_documents, epoch_batches
    from qunlearn.config import ModelConfig
    from qunlearn.data.tokenizer import load_tokenizer
    from qunlearn.models import build_tiny_llama
    from qunlearn.stages import _base_texts
    from qunlearn.train import lr_lambda

    runtime.seed_everything(0, args.threads)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    data = Path(args.data)
    tok = load_tokenizer(data / "tokenizer")
    cfg = ModelConfig(hidden_size=args.hidden, num_layers=args.layers, num_heads=4, intermediate_size=3 * args.hidden)
    model = build_tiny_llama(cfg, tok, 0)
    examples = encode_documents(tok, _base_texts(data, "target"), cfg.max_length)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(50, 1000))
    gen = torch.Generator().manual_seed(0)
    steps = 0
    model.train()
    while steps < args.steps:
        for idx in epoch_batches(len(examples), 16, gen):
            loss = model(**collate([examples[i] for i in idx], tok.pad_token_id)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if steps >= args.steps:
                break
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    save_file(state, args.out)
    print(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(), "sha256": digest[:16]}))


def compare(a: str, b: str) -> None:
    from safetensors.torch import load_file

    wa, wb = load_file(a), load_file(b)
    diff = {k: (wa[k] - wb[k]).abs().max().item() for k in wa}
    print(json.dumps({"max_abs_dw": max(diff.values()), "identical_tensors": sum(v == 0 for v in diff.values())}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?")
    p.add_argument("out", nargs="?")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"))
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-mkldnn", action="store_true")
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.data and args.out:
        train(args)
    else:
        p.error("give DATA_DIR OUT, or --compare A B")


if __name__ == "__main__":
    main()
