"""Pinned CPU kernels, so that one config gives the same bits on every x86-64 machine with AVX2.

PyTorch picks its own vectorised CPU kernels (softmax, norms, reductions, the optimizer's
element-wise updates) by the CPU's capability (AVX2 or AVX-512), and MKL picks its matrix-multiply
code path by the CPU too. Two machines of one cloud "kind" can differ there (one CPU generation
has AVX-512, the next not), and a different summation order changes the last bits of every step;
over a training run those bits grow into different metrics (docs: Measurements, "Reproducibility
across CPUs"). Pinning both to AVX2 removes that difference. The variables are read when torch
first dispatches a kernel and when MKL starts, so they are set before any tensor work:
``qunlearn.jobs`` (imported first by every workflow script) and ``runtime.seed_everything`` call
:func:`pin_cpu_kernels`. A value already in the environment wins (``ATEN_CPU_CAPABILITY=avx512``
for speed, ``MKL_CBWR=COMPATIBLE`` for Intel and AMD alike; docs: Running, "What is
bit-reproducible"). Torch-free: importing this module imports nothing heavy.
"""

from __future__ import annotations

import logging
import os
import platform

log = logging.getLogger(__name__)

# The lowest vector level every current x86-64 server has; the same kernels then run everywhere.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own CPU kernels (torch.backends.cpu.get_cpu_capability())
    "MKL_CBWR": "AVX2",  # MKL's code branch (conditional numerical reproducibility)
}


def applies(machine: str | None = None) -> bool:
    """The pins name x86-64 instruction sets: elsewhere (arm64) they are left unset."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def pin_cpu_kernels(environ=None, machine: str | None = None) -> dict[str, str]:
    """Set each of :data:`PINNED_ENV` unless already set; returns the values now in force."""
    environ = os.environ if environ is None else environ
    if not applies(machine):
        return {}
    for key, value in PINNED_ENV.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in PINNED_ENV}


def kernel_settings() -> dict:
    """What this process computes with (for the job log): the pins in the environment, torch's
    CPU capability in use, and its thread count."""
    import torch

    return {
        **{key: os.environ.get(key, "") for key in PINNED_ENV},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }


def check_pinned() -> None:
    """Log the kernel settings in force; warn when torch chose its kernels before the pin (torch
    used before qunlearn.jobs or seed_everything): results may then differ from another machine's."""
    import torch

    log.info("CPU kernels: %s", kernel_settings())
    wanted = os.environ.get("ATEN_CPU_CAPABILITY", "")
    used = torch.backends.cpu.get_cpu_capability()
    if applies() and wanted and used.lower() != wanted.lower():
        log.warning(
            "CPU kernels not pinned: torch uses %s although ATEN_CPU_CAPABILITY=%s (torch ran a kernel "
            "before the variable was set, or this CPU lacks it); results may differ across machines",
            used,
            wanted,
        )
