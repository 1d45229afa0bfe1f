"""Cluster resources of each job (GPUs, memory, runtime), computed from the config's model size.

Pure Python (no torch import): the rules call :func:`rule_resources` at planning time. Numbers are
estimates for sizing SLURM requests, not measurements; ``compute.runtime_scale`` stretches every
runtime and ``--set-resources RULE:mem_mb=...`` overrides any of them on the command line.

The memory plan of one unlearning job (README, "Real scale"), per parameter in bytes:

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
"""

from __future__ import annotations

import math

from . import plan
from .config import ComputeConfig, ModelConfig, PretrainedConfig, TrainConfig, UnlearnConfig, from_dict

GB = 1e9
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
GPU_RULES = ("train_base", "unlearn", "quantize", "evaluate")


def tiny_llama_params(model: dict | None, vocab_size: int) -> int:
    """Parameter count of the LlamaForCausalLM that models.build_tiny_llama builds."""
    m = from_dict(ModelConfig, model, "model")
    h, i, n = m.hidden_size, m.intermediate_size, m.num_layers
    per_layer = 4 * h * h + 3 * h * i + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
    embeddings = vocab_size * h * (1 if m.tie_word_embeddings else 2)
    return n * per_layer + embeddings + h


def model_size(config: dict, dataset: str) -> tuple[float, int]:
    """(number of parameters, bytes per parameter) of the models of ``dataset``."""
    owner = plan.dataset_owner(config, dataset)
    ds = config["datasets"][owner]
    pre = ds.get("pretrained")
    if pre and (pre.get("target") or pre.get("retrain")):
        cfg = from_dict(PretrainedConfig, pre, f"datasets.{owner}.pretrained")
        return cfg.n_params, BYTES[cfg.dtype]
    vocab = (ds.get("tokenizer") or {}).get("vocab_size", 2048)
    return float(tiny_llama_params(config.get("model"), vocab)), 4


def needs_reference(method: str) -> bool:
    return method.startswith("npo") or "_klr" in method


def memory_plan(n_params: float, bytes_per_param: int, optimizer: str = "adamw",
                reference: bool = False, reference_device: str = "same",
                activations_gb: float | None = None) -> dict:
    """GB per device for training/unlearning one model (see the module docstring)."""
    w = n_params * bytes_per_param / GB
    opt = {"adamw": 2 * w, "adamw_8bit": 2 * n_params / GB, "adafactor": 0.02 * w}[optimizer]
    act = activations_gb if activations_gb is not None else max(0.5, 0.3 * w)
    ref = w if reference else 0.0
    plan_gb = {"weights": w, "gradients": w, "optimizer": opt, "activations": act, "reference": ref}
    main = w + w + opt + act + (ref if reference_device == "same" else 0.0)
    plan_gb["main_device"] = main
    plan_gb["reference_device"] = ref if reference_device.startswith("cuda:") else 0.0
    plan_gb["host_ram"] = (ref if reference_device == "cpu" else 0.0) + w  # + one copy while loading
    return {k: round(v, 3) for k, v in plan_gb.items()}


def _unlearn_cfg(config: dict) -> UnlearnConfig:
    unl = config.get("unlearn") or {}
    raw = {k: unl[k] for k in plan.UNLEARN_SHARED_KEYS if k in unl}
    return from_dict(UnlearnConfig, raw, "unlearn")


def rule_resources(config: dict, rule: str, dataset: str, method: str | None = None,
                   epochs: int | str | None = None) -> dict:
    """{gpu, mem_mb, runtime (minutes)} of one job of ``rule`` (a GPU rule) on ``dataset``;
    ``epochs``: an unlearn arm's own epochs (default: unlearn.epochs)."""
    if rule not in GPU_RULES:
        raise ValueError(f"rule_resources: {rule!r} is not a GPU rule ({', '.join(GPU_RULES)})")
    compute = from_dict(ComputeConfig, config.get("compute"), "compute")
    n, b = model_size(config, dataset)
    billions = n / 1e9
    weights_gb = n * b / GB
    gpus = 1
    if rule == "evaluate":
        # load (one host copy), quantize on the host or on the GPU, generate
        host_gb = 2.0 * weights_gb
        minutes = 15 + 10 * billions
    elif rule == "quantize":
        # GPTQ/AWQ calibrate layer by layer: the model on the host, one layer's activations on the GPU
        host_gb = 2.0 * weights_gb
        minutes = 15 + 30 * billions / 7.0
    else:
        unl = _unlearn_cfg(config)
        if rule == "unlearn":
            ref = needs_reference(method or "")
            mp = memory_plan(n, b, unl.optimizer, ref, unl.reference_device)
            epochs = int(epochs) if epochs is not None else int(plan.default_epochs(config))
            if mp["reference_device"] > 0:
                gpus = 2
        else:  # train_base: the tiny model only (pretrained bases are fetched, not trained)
            mp = memory_plan(n, b, "adamw")
            epochs = from_dict(TrainConfig, config.get("train"), "train").max_epochs
        host_gb = mp["host_ram"] + weights_gb
        # ~20 GPU-minutes per epoch of MUSE-News for a 7B model on one 80 GB GPU, linear in size
        minutes = 10 + 20 * (billions / 7.0) * epochs
    mem_mb = int(math.ceil(max(3000.0, 1000.0 * (host_gb + 2.5)) / 100.0) * 100)
    runtime = int(math.ceil(max(30.0, minutes * compute.runtime_scale)))
    return {"gpu": min(gpus, compute.max_gpus), "mem_mb": mem_mb, "runtime": runtime}

