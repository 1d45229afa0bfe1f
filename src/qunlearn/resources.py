"""Cluster resources of each job (GPUs, memory, runtime), computed from the config's model size.

Pure Python (no torch import): the rules call :func:`rule_resources` with the experiment object at
planning time; whether a job holds a frozen reference is the method's trait (``reference_outputs``). Numbers are
estimates for sizing SLURM requests, not measurements; ``compute.runtime_scale`` stretches every
runtime and ``--set-resources RULE:mem_mb=...`` overrides any of them on the command line.

The memory plan of one unlearning job (docs "Real scale"), per parameter in bytes:

    weights                 b        (b = 2 for bf16/fp16, 4 for fp32)
    gradients               b
    optimizer state         2b for torch AdamW (exp_avg + exp_avg_sq in the parameter dtype),
                            2 for 8-bit AdamW (bitsandbytes), ~0 for Adafactor (factored moments)
    frozen reference        b        (NPO and KL methods only; on the model's GPU, a second GPU, or CPU)
    activations             a margin (gradient checkpointing keeps it to a few GB at 2048 tokens)

Llama-2-7B (6.74e9 parameters) in bf16 with AdamW and a reference: 13.5 + 13.5 + 27 + 13.5 = 67 GB
plus activations: past an 80 GB GPU at batch 32 x 2048 tokens. ``unlearn.reference_device: cuda:1``
(the job then asks for 2 GPUs) or ``unlearn.optimizer: adamw_8bit`` (54 GB) or ``adafactor`` fits
one or two 80 GB GPUs.

Sharded over N GPUs (``unlearn.processes: N``, FSDP2; qunlearn.distributed) weights, gradients,
optimizer state and the reference are each split N ways; per GPU come on top the all-gathered
parameters of the decoder layer being computed and the next one (2 x 6.74e9 / 32 x 2 B = 0.8 GB
for Llama-2-7B), the activations of the process's micro-batch, and for SURE one more gradient
shard (its forget-gradient buffer). 7B, AdamW, reference: 67.4 / N + 0.8 GB + activations =
34.5 (N = 2), 17.7 (N = 4), 9.3 (N = 8). While loading, before sharding, each GPU briefly holds the
full weights and the reference's copy (2 x 13.5 GB). Measured at tiny scale (scripts/
benchmark_sharding.py, NPO_GDR, 1.2M fp32 parameters, batch 32): weights + gradients + AdamW per
process 18.4 MB in one process, 9.2 MB in each of 2 (exactly 1/N); peak RSS 1045 MB vs 717 MB per
process, activation-dominated at that size (micro-batches of 8: 571 MB).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from .config import ModelConfig, from_dict

if TYPE_CHECKING:
    from .experiment import Experiment

GB = 1e9
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GPU_RULES = ("train_base", "prepare_method", "unlearn", "attack", "quantize", "evaluate")
LAYERS_GATHERED = 2  # FSDP2: the layer being computed and the one prefetched
LLAMA_7B_LAYERS = 32


def tiny_llama_params(model: dict | None, vocab_size: int) -> int:
    """Parameter count of the LlamaForCausalLM that models.build_tiny_llama builds."""
    m = from_dict(ModelConfig, model, "model")
    h, i, n = m.hidden_size, m.intermediate_size, m.num_layers
    per_layer = 4 * h * h + 3 * h * i + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
    embeddings = vocab_size * h * (1 if m.tie_word_embeddings else 2)
    return n * per_layer + embeddings + h


def model_size(exp: Experiment, dataset: str) -> tuple[float, int]:
    """(number of parameters, bytes per parameter) of the models of ``dataset``."""
    ds = exp.datasets[exp.owner(dataset)]
    pre = ds.pretrained
    if pre is not None and (pre.target is not None or pre.retrain is not None):
        return pre.n_params, BYTES[pre.dtype]
    return float(tiny_llama_params(dataclasses.asdict(exp.model_of(dataset)), ds.tokenizer.vocab_size)), 4


def memory_plan(
    n_params: float,
    bytes_per_param: int,
    optimizer: str = "adamw",
    reference: bool = False,
    reference_device: str = "same",
    activations_gb: float | None = None,
    processes: int = 1,
    saliency_masked: bool = False,
) -> dict:
    """GB per device for training/unlearning one model (see the module docstring); with
    ``processes`` > 1 the weights, gradients, optimizer state and reference are sharded."""
    w = n_params * bytes_per_param / GB
    opt = {"adamw": 2 * w, "adamw_8bit": 2 * n_params / GB, "adafactor": 0.02 * w}[optimizer]
    act = activations_gb if activations_gb is not None else max(0.5, 0.3 * w)
    ref = w if reference else 0.0
    plan_gb = {"weights": w, "gradients": w, "optimizer": opt, "activations": act, "reference": ref}
    if processes > 1:
        gathered = LAYERS_GATHERED * w / LLAMA_7B_LAYERS
        sharded = (w + w + opt + ref + (w if saliency_masked else 0.0)) / processes
        plan_gb.update(processes=processes, gathered_layers=gathered, main_device=sharded + gathered + act)
        plan_gb["reference_device"] = 0.0
        plan_gb["host_ram"] = w  # + one copy while loading
        return {k: round(v, 3) for k, v in plan_gb.items()}
    main = w + w + opt + act + (ref if reference_device == "same" else 0.0)
    plan_gb["main_device"] = main
    plan_gb["reference_device"] = ref if reference_device.startswith("cuda:") else 0.0
    plan_gb["host_ram"] = (ref if reference_device == "cpu" else 0.0) + w  # + one copy while loading
    return {k: round(v, 3) for k, v in plan_gb.items()}


def rule_resources(
    exp: Experiment, rule: str, dataset: str, method: str | None = None, epochs: int | str | None = None
) -> dict:
    """{gpu, nodes, mem_mb, runtime (minutes)} of one job of ``rule`` (a GPU rule) on ``dataset``;
    ``epochs``: an unlearn arm's own epochs (default: unlearn.epochs). A sharded unlearn job
    (``unlearn.processes`` N) asks for N GPUs on one node; its launcher starts one process per
    allocated GPU."""
    if rule not in GPU_RULES:
        raise ValueError(f"rule_resources: {rule!r} is not a GPU rule ({', '.join(GPU_RULES)})")
    n, b = model_size(exp, dataset)
    billions = n / 1e9
    weights_gb = n * b / GB
    gpus = 1
    if rule == "evaluate":
        # load (one host copy), quantize on the host or on the GPU, generate
        host_gb = 2.0 * weights_gb
        minutes = 15 + 10 * billions
    elif rule == "attack":
        # a fine-tuning attack holds weights, gradients and AdamW states (a few hundred steps);
        # pruning, noise and interpolation hold two or three copies of the weights
        host_gb = memory_plan(n, b, "adamw")["host_ram"] + 2.0 * weights_gb
        minutes = 15 + 10 * billions
    elif rule == "quantize":
        # GPTQ/AWQ calibrate layer by layer: the model on the host, one layer's activations on the GPU
        host_gb = 2.0 * weights_gb
        minutes = 15 + 30 * billions / 7.0
    else:
        unl = exp.unlearn
        if rule in ("unlearn", "prepare_method"):
            # a preparation trains without a frozen reference, for about unlearn.epochs epochs
            spec = exp.method_specs[method] if method is not None else None
            ref = rule == "unlearn" and spec is not None and spec.needs_reference
            masked = spec is not None and spec.saliency_masked
            mp = memory_plan(n, b, unl.optimizer, ref, unl.reference_device, None, unl.processes, masked)
            epochs = int(epochs) if epochs is not None else int(unl.epochs)
            if mp["reference_device"] > 0:
                gpus = 2
            if unl.processes > 1:
                gpus = unl.processes
                host_extra = (unl.processes - 1) * weights_gb  # every process loads the weights once
        else:  # train_base: the tiny model only (pretrained bases are fetched, not trained)
            mp = memory_plan(n, b, "adamw")
            epochs = exp.train.max_epochs
        host_gb = mp["host_ram"] + weights_gb + (host_extra if rule == "unlearn" and unl.processes > 1 else 0.0)
        # ~20 GPU-minutes per epoch of MUSE-News for a 7B model on one 80 GB GPU, linear in size
        minutes = 10 + 20 * (billions / 7.0) * epochs
    mem_mb = int(math.ceil(max(3000.0, 1000.0 * (host_gb + 2.5)) / 100.0) * 100)
    runtime = int(math.ceil(max(30.0, minutes * exp.compute.runtime_scale)))
    return {"gpu": min(gpus, exp.compute.max_gpus), "nodes": 1, "mem_mb": mem_mb, "runtime": runtime}
