"""Glue for workflow/scripts/*: per-job logging and JSON params, and the pinned CPU kernels.

Every workflow script imports this module first, before anything touches torch, so the pins of
:mod:`qunlearn.determinism` are in the environment when torch and MKL read them."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path

from .determinism import PINNED_ENV, pin_cpu_kernels

pin_cpu_kernels()


@contextlib.contextmanager
def job_logging(log_path: str | None):
    """Send this job's logging, warnings and progress bars (stderr) to its log file."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as fh:
        old_err = sys.stderr
        sys.stderr = fh
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.info("job environment: %s", json.dumps(job_environment(), sort_keys=True))
        try:
            yield
        except BaseException:
            import traceback

            traceback.print_exc(file=fh)
            raise
        finally:
            root.removeHandler(handler)
            sys.stderr = old_err


def job_environment() -> dict:
    """Where this job runs: host, SLURM job/partition (empty outside SLURM), the visible GPUs and the
    CPU kernel pins (qunlearn.determinism)."""
    import os
    import socket

    keys = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", *PINNED_ENV)
    return {"host": socket.gethostname(), **{k: os.environ.get(k, "") for k in keys}}


def param(smk, name: str):
    """A JSON-string param decoded (params are canonical JSON so reruns track content)."""
    value = getattr(smk.params, name)
    return json.loads(value) if isinstance(value, str) else value
