import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "configs" / "ci.yaml"


@pytest.fixture
def default_config():
    with open(ROOT / "config.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))


@pytest.fixture
def full_config():
    """The default with the full overlay (``--configfile config.yaml configs/overlays/full.yaml``)."""
    from qunlearn.configfile import load_config_files

    return load_config_files([ROOT / "config.yaml", ROOT / "configs" / "overlays" / "full.yaml"])


def run_snakemake(workdir, *args, configfile=CI_CONFIG, timeout=3000):
    """Snakemake on ``workdir`` with the CI config (the e2e tests' one real run)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "--configfile",
        str(configfile),
        "--directory",
        str(workdir),
        "--snakefile",
        str(ROOT / "Snakefile"),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (Path(workdir) / "logs").rglob("*.log"))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-5000:]}\n{logs}")
    return proc


@pytest.fixture(scope="session")
def ci_run(tmp_path_factory):
    """One real run of configs/ci.yaml (minutes), shared by every e2e test module (test_e2e,
    test_dvc, test_paper): tests that change it say so and leave it complete."""
    workdir = tmp_path_factory.mktemp("e2e")
    reuse = os.environ.get("QUNLEARN_E2E_RUN")  # debugging: a finished run of the same config, copied
    if reuse:
        shutil.copytree(reuse, workdir, dirs_exist_ok=True, symlinks=True)
    run_snakemake(workdir)  # nothing to do when the copied run is complete
    return workdir
