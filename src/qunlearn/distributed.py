"""Sharded unlearning over the GPUs of one node: PyTorch FSDP2 (``fully_shard``), launched by
``accelerate launch`` (docs/guide/real-scale.md says why FSDP and not DeepSpeed ZeRO-3).

The job's own process (the Snakemake script) runs :func:`launch`: it writes the stage's arguments
to a JSON file and runs ``accelerate launch --use_fsdp --fsdp_version 2 --num_processes N -m
qunlearn.distributed ARGS.json``, N from the allocation (:func:`allocated_processes`). Each worker
(:func:`main`) joins the process group (NCCL on GPUs, gloo on CPUs), loads the model, and the
unlearning loop shards the model and the frozen reference the same way (:func:`shard`: each decoder
layer, then the root, as accelerate's own FSDP2 wrapping does); rank 0 gathers the full weights and
writes the outputs. Without a process group every helper here is the identity (one process).

The same code runs on CPUs (gloo) in the tests; the GPU-only lines are the NCCL backend and
``torch.cuda.set_device`` in :func:`init`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def allocated_processes(configured: int) -> int:
    """Processes to launch: one per GPU of the allocation (``CUDA_VISIBLE_DEVICES``, which SLURM
    sets to the job's GPUs), else ``unlearn.processes`` (CPU processes, the test variant)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    gpus = [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if gpus:
        if len(gpus) != configured:
            log.warning("unlearn.processes %d, but %d GPU(s) allocated: launching %d", configured, len(gpus), len(gpus))
        return len(gpus)
    return configured


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(processes: int, args_json: str | Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--use_fsdp",
        "--fsdp_version",
        "2",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "qunlearn.distributed",
        str(args_json),
    ]


def launch(processes: int, stage_kwargs: dict, work_dir: str | Path) -> None:
    """Run ``stages.unlearn_model(**stage_kwargs)`` in ``processes`` workers; raises if one fails."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    args_json = work_dir / f".unlearn-args-{os.getpid()}.json"
    args_json.write_text(json.dumps(stage_kwargs), encoding="utf-8")
    cmd = launch_command(processes, args_json)
    log.info("launching %d processes: %s", processes, " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (stage_kwargs.get("threads") or 1) // processes))}
    try:
        proc = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
    finally:
        args_json.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"unlearn: the {processes} sharded processes failed (exit {proc.returncode}); see the log")


def in_worker() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init():
    """Join the process group of ``accelerate launch`` (env:// rendezvous); returns the device."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():  # GPU-only branch (not yet run on a GPU)
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return device


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(model) -> None:
    """FSDP2 in place: every decoder layer its own unit, then the root (embeddings, norm, head).
    Rank 0's weights are broadcast first (``sync_module_states``): under ``accelerate launch
    --use_fsdp`` transformers loads the weights on rank 0 only and leaves the other ranks' empty."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    for t in [*model.parameters(), *model.buffers()]:
        dist.broadcast(t.data, src=0)
    layers = getattr(getattr(model, "model", None), "layers", None)
    for layer in layers if layers is not None else ():
        fully_shard(layer)
    fully_shard(model)


def local(t):
    """The local shard of a DTensor (a view: in-place changes reach the parameter), else ``t``."""
    return t.to_local() if hasattr(t, "to_local") else t


def all_reduce_sum(t):
    import torch.distributed as dist

    if rank_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_cat(t):
    """The 1-D tensors of every rank concatenated (lengths may differ)."""
    import torch
    import torch.distributed as dist

    world = rank_world()[1]
    if world == 1:
        return t
    n = torch.tensor([t.numel()], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype, device=t.device)
    padded[: t.numel()] = t
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def full_state_dict(model) -> dict:
    """The unsharded weights on the CPU, on every rank (every rank must call it: all-gathers)."""
    return {
        k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu() for k, v in model.state_dict().items()
    }


def main(argv: list[str]) -> None:
    """A worker of :func:`launch`: join the group, run the stage, leave the group."""
    import torch.distributed as dist

    from .stages import unlearn_model

    kwargs = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    device = init()
    try:
        unlearn_model(**kwargs, device=str(device))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main(sys.argv[1:])
