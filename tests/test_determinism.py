"""Reproducibility across machines: pinned CPU kernels in every job, and a stop rule that one noisy
memorisation check cannot trigger (docs: Running, "What is bit-reproducible")."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from qunlearn.determinism import PINNED_ENV, pin_cpu_kernels
from qunlearn.train import memorised

SRC = Path(__file__).resolve().parents[1] / "src"


def _has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2(), reason="needs AVX2")
def test_a_job_computes_with_the_pinned_kernels():
    """What a workflow script does first (import qunlearn.jobs), in a clean environment: torch then
    runs its AVX2 kernels even on an AVX-512 machine, MKL its AVX2 branch, and the job log names both."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    env["PYTHONPATH"] = str(SRC)
    code = (
        "import json, os\n"
        "from qunlearn.jobs import job_environment\n"
        "import torch\n"
        "torch.ones(4).softmax(0)\n"
        "print(json.dumps({'cap': torch.backends.cpu.get_cpu_capability(), 'log': job_environment()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen["cap"] == "AVX2"
    assert {k: seen["log"][k] for k in PINNED_ENV} == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}


def test_a_setting_in_the_environment_wins_and_arm_is_left_alone():
    env = {"ATEN_CPU_CAPABILITY": "avx512"}
    assert pin_cpu_kernels(env, machine="x86_64") == {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX2"}
    arm: dict = {}
    assert pin_cpu_kernels(arm, machine="aarch64") == {} and arm == {}


THR = {"knowmem_forget_qa": 0.95, "verbmem_forget": 0.9}


def _stop(values: list[float], consecutive: int) -> int | None:
    """Index of the check at which training stops, for KnowMem readings ``values`` (VerbMem at 1)."""
    checks: list[dict] = []
    for i, v in enumerate(values):
        checks.append({"epoch": 5 * (i + 1), "knowmem_forget_qa": v, "verbmem_forget": 1.0})
        if memorised(checks, THR, consecutive):
            return i
    return None


def test_one_reading_above_the_threshold_does_not_stop_training():
    # KnowMem hovering around 0.95 (+-0.02: a QA pair of 50 flipping), then settling above it
    noisy = [0.90, 0.96, 0.94, 0.93, 0.96, 0.97, 0.98]
    assert _stop(noisy, 1) == 1  # the old rule: the first lucky reading
    assert _stop(noisy, 2) == 5  # two in a row
    assert _stop([0.96, 0.94, 0.96, 0.94], 2) is None
    assert _stop([0.99, 0.99], 2) == 1
    # every check must hold at each of the readings, not one check at one and another at the next
    mixed = [
        {"knowmem_forget_qa": 0.96, "verbmem_forget": 0.8},
        {"knowmem_forget_qa": 0.90, "verbmem_forget": 0.95},
    ]
    assert not memorised(mixed, THR, 2)
    with pytest.raises(ValueError, match="train.memorised_checks"):
        memorised(mixed, THR, 0)


def test_every_workflow_script_imports_the_pins():
    scripts = sorted((SRC.parent / "workflow" / "scripts").glob("*.py"))
    assert scripts
    missing = [p.name for p in scripts if "from qunlearn.jobs import" not in p.read_text(encoding="utf-8")]
    assert missing == []
