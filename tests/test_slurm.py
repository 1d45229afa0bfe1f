"""The `slurm` profile against a real SLURM controller (scripts/slurm_local.sh; .ci/run starts it).

Runs the CI config (configs/ci.yaml, the one tests/test_e2e.py runs locally) through
``snakemake --profile profiles/slurm`` under a hard kill timeout, then
asks SLURM itself (scontrol: the jobs of this run, their partition, GPUs and state) and the job
environment every job writes into its own log (SLURM_JOB_ID, partition, CUDA_VISIBLE_DEVICES)
whether every non-local rule ran as a SLURM job and the GPU rules in the gpu partition with a GPU.
The tables the cluster wrote must equal those of the local run: same code, same seeds, same numbers.
QUNLEARN_SLURM_TEST_CONFIG=configs/slurm-smoke.yaml routes a 1-layer DAG instead (~3 min).
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CI_CONFIG, ROOT

from qunlearn import resources
from qunlearn.experiment import Experiment

pytestmark = pytest.mark.slurm

SLURM_DIR = Path(os.environ.get("QUNLEARN_SLURM_DIR", "/tmp/qunlearn-slurm"))
CONFIG = ROOT / os.environ.get("QUNLEARN_SLURM_TEST_CONFIG", "configs/ci.yaml")
# train_base, unlearn, quantize, evaluate; and unlearn_seeded (`use rule unlearn`: a seed replicate)
GPU_RULES = set(resources.GPU_RULES) | {"unlearn_seeded"}
KILL_AFTER = int(os.environ.get("QUNLEARN_SLURM_TEST_TIMEOUT", "2700"))  # seconds, then SIGKILL


def slurm_env():
    env = {**os.environ, "SLURM_CONF": str(SLURM_DIR / "slurm.conf")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # the venv's snakemake
    for k in ("QUNLEARN_CPU_PARTITION", "QUNLEARN_GPU_PARTITION", "QUNLEARN_SLURM_ACCOUNT"):
        env.pop(k, None)  # the profile's defaults: partitions cpu and gpu
    return env


def slurm_up(env) -> bool:
    if not shutil.which("sinfo") or not (SLURM_DIR / "slurm.conf").is_file():
        return False
    try:
        out = subprocess.run(
            ["timeout", "-s", "KILL", "15", "sinfo", "-h", "-o", "%P %t"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except subprocess.TimeoutExpired:
        return False
    return "gpu" in out and ("idle" in out or "mix" in out)


def scontrol_jobs(env, name: str) -> list[dict]:
    out = subprocess.run(
        ["timeout", "-s", "KILL", "30", "scontrol", "show", "job", "-o"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]
    return [j for j in jobs if j.get("JobName") == name]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    env = slurm_env()
    if not slurm_up(env):
        pytest.skip(
            f"no SLURM cluster at {SLURM_DIR} (start one with `bash scripts/slurm_local.sh start`"
            f" as root; .ci/run does)"
        )
    workdir = tmp_path_factory.mktemp("slurm")
    cmd = [
        "timeout",
        "-s",
        "KILL",
        str(KILL_AFTER),
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--configfile",
        str(CONFIG),
        "--directory",
        str(workdir),
        "--snakefile",
        str(ROOT / "Snakefile"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=KILL_AFTER + 100)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        started = re.search(r"SLURM run ID: (\S+)", out)
        if started:  # a killed Snakemake leaves its submitted jobs behind: cancel them
            subprocess.run(["timeout", "-s", "KILL", "30", "scancel", "--name", started.group(1)], env=env)
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-6000:]}\n{logs[-10000:]}")
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    table = out.split("Job stats:")[1].split("\n\n")[0]
    planned = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    local = set(re.findall(r"^localrule (\w+):", out, re.M))  # what Snakemake itself ran locally
    return {"workdir": workdir, "out": out, "jobs": scontrol_jobs(env, run_id), "planned": planned, "local": local}


def test_run_finished_and_planned_every_evaluation(slurm_run):
    assert (slurm_run["workdir"] / "paper" / "tables" / "metrics.csv").stat().st_size > 0
    cfg = yaml.safe_load(CONFIG.read_text())
    exp = Experiment(cfg)
    assert slurm_run["planned"]["evaluate"] == len(exp.evaluations)
    planned = slurm_run["planned"]  # seed replicates are rule unlearn_seeded
    assert planned.get("unlearn", 0) + planned.get("unlearn_seeded", 0) == len(exp.unlearn_jobs())


@pytest.mark.skipif(CONFIG != CI_CONFIG, reason="the local e2e run is of configs/ci.yaml")
def test_slurm_tables_equal_the_local_run(slurm_run, ci_run):
    """Deterministic jobs: the cluster's metrics equal tests/test_e2e.py's local run, value for value."""
    for table in ("metrics.csv", "retention.csv"):
        cluster = (slurm_run["workdir"] / "results" / "tables" / table).read_text()
        assert cluster == (ci_run / "results" / "tables" / table).read_text(), table


def test_every_non_local_rule_ran_as_a_slurm_job_in_its_partition(slurm_run):
    jobs, planned = slurm_run["jobs"], slurm_run["planned"]
    assert jobs, "scontrol shows no job of this run"
    by_rule = collections.defaultdict(list)
    for j in jobs:
        assert j["JobState"] == "COMPLETED", j
        by_rule[re.match(r"rule_(\w+?)(_wildcards_.*)?$", j["Comment"]).group(1)].append(j)
    local = slurm_run["local"]
    assert {"prepare_data", "aggregate", "all"} <= local and not local & GPU_RULES
    expected = {r: n for r, n in planned.items() if r not in local | {"total"}}
    assert {r: len(js) for r, js in by_rule.items()} == expected
    for rule, js in by_rule.items():
        for j in js:
            if rule not in GPU_RULES:  # release, analysis: CPU rules
                assert j["Partition"] == "cpu" and "gpu" not in j.get("TresPerJob", ""), j
            else:
                assert j["Partition"] == "gpu" and j["TresPerJob"] == "gres:gpu:1", j


def test_each_job_recorded_its_slurm_allocation(slurm_run):
    """The job's own log: SLURM job id (one of this run's), partition, visible GPU; local rules none."""
    ids = {j["JobId"]: j for j in slurm_run["jobs"]}
    seen = collections.Counter()
    for log in (slurm_run["workdir"] / "logs").rglob("*.log"):
        rel = log.relative_to(slurm_run["workdir"] / "logs")
        if rel.parts[0] == "slurm":
            continue
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        m = re.search(r"job environment: (\{.*\})", log.read_text())
        assert m, f"{log}: no job environment line"
        env = json.loads(m.group(1))  # written by qunlearn.jobs.job_logging
        seen[rule] += 1
        if rule in slurm_run["local"]:
            assert env["SLURM_JOB_ID"] == "", (log, env)
            continue
        assert env["SLURM_JOB_ID"] in ids, (log, env)
        assert env["SLURM_JOB_PARTITION"] == ids[env["SLURM_JOB_ID"]]["Partition"]
        if rule in GPU_RULES:
            # one fake GPU of the node's (scripts/slurm_local.sh), the one SLURM allocated
            assert env["SLURM_JOB_PARTITION"] == "gpu" and re.fullmatch(r"\d+", env["CUDA_VISIBLE_DEVICES"]), (log, env)
            # SLURM_JOB_GPUS is set in the batch step, not in the srun step the jobstep plugin runs
            assert env["SLURM_JOB_GPUS"] in ("", env["CUDA_VISIBLE_DEVICES"]), (log, env)
        else:
            assert env["SLURM_JOB_PARTITION"] == "cpu" and env["CUDA_VISIBLE_DEVICES"] == "", (log, env)
    planned = dict(slurm_run["planned"])
    # a seed replicate (rule unlearn_seeded) logs under logs/unlearn/, as its base-seed arm does
    planned["unlearn"] = planned.get("unlearn", 0) + planned.pop("unlearn_seeded", 0)
    assert dict(seen) == {r: n for r, n in planned.items() if r not in ("total", "all")}
