"""A sharded unlearn job on the local SLURM cluster (scripts/slurm_local.sh, fake GPUs):
configs/slurm-sharded.yaml (`unlearn.processes: 2`) through ``snakemake --profile profiles/slurm``.
SLURM must allocate the unlearn job 2 GPUs on one node, the job must see both in
CUDA_VISIBLE_DEVICES and launch 2 processes (its meta records them). ~3-4 min on 2 cores."""

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from test_slurm import KILL_AFTER, scontrol_jobs, slurm_env, slurm_up

pytestmark = pytest.mark.slurm

CONFIG = ROOT / "configs" / "slurm-sharded.yaml"


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    env = slurm_env()
    if not slurm_up(env):
        pytest.skip("no SLURM cluster (start one with `bash scripts/slurm_local.sh start` as root)")
    workdir = tmp_path_factory.mktemp("slurm-sharded")
    cmd = ["timeout", "-s", "KILL", str(KILL_AFTER), sys.executable, "-m", "snakemake", "--profile", "profiles/slurm"]
    cmd += ["--configfile", str(CONFIG), "--directory", str(workdir), "--snakefile", str(ROOT / "Snakefile")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=KILL_AFTER + 100)
    out = proc.stdout + proc.stderr
    started = re.search(r"SLURM run ID: (\S+)", out)
    if proc.returncode != 0:
        if started:
            subprocess.run(["timeout", "-s", "KILL", "30", "scancel", "--name", started.group(1)], env=env)
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-6000:]}\n{logs[-10000:]}")
    return {"workdir": workdir, "jobs": scontrol_jobs(env, started.group(1))}


def test_the_sharded_unlearn_job_gets_two_gpus_on_one_node(sharded_run):
    unlearn = [j for j in sharded_run["jobs"] if j["Comment"].startswith("rule_unlearn")]
    assert len(unlearn) == 1, [j["Comment"] for j in sharded_run["jobs"]]
    job = unlearn[0]
    assert job["JobState"] == "COMPLETED" and job["Partition"] == "gpu", job
    assert job["TresPerJob"] == "gres:gpu:2" and job["NumNodes"] == "1", job
    others = [j for j in sharded_run["jobs"] if j is not job and j["Partition"] == "gpu"]
    assert others and all(j["TresPerJob"] == "gres:gpu:1" for j in others)  # evaluations, train_base


def test_the_job_launched_one_process_per_allocated_gpu(sharded_run):
    logs = list((sharded_run["workdir"] / "logs" / "unlearn").rglob("*.log"))
    assert len(logs) == 1, logs
    text = logs[0].read_text()
    env = json.loads(re.search(r"job environment: (\{.*\})", text).group(1))
    assert re.fullmatch(r"\d+,\d+", env["CUDA_VISIBLE_DEVICES"]), env
    assert re.search(r"launching 2 processes: .*accelerate\.commands\.launch .*--num_processes 2", text)
    metas = [p for p in (sharded_run["workdir"] / "results").rglob("meta.json") if "unlearn" in p.parts]
    assert len(metas) == 1, metas
    meta = json.loads(metas[0].read_text())
    assert meta["scale"]["processes"] == 2 and len(meta["scale"]["peak_rss_mb"]) == 2
    assert meta["history"]["micro_batches_per_step"] >= 2  # split over both processes
