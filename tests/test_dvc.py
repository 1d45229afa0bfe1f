"""DVC round trip on the real CI run: dvc repro (Snakemake: nothing to do) -> dvc push to a local
remote -> a fresh git clone -> dvc pull -> the README's post-restore command -> nothing to recompute,
and Snakemake's restored records still replan exactly; dvc exp run -S reruns only what the change
touches; dvc metrics diff shows the change between two experiments."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import CI_CONFIG, ROOT

from qunlearn.experiment import Experiment

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
# The README's command after dvc pull / checkout / exp apply (see "DVC, the paper and the report").
AFTER_RESTORE = ["snakemake", "--cores", "2", "--touch", "--rerun-triggers", "mtime", "--drop-metadata"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(cwd, *cmd, check=True):
    env = {**os.environ, **GIT_ENV, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def planned(cwd, *args) -> dict[str, int]:
    out = sh(cwd, "snakemake", "--cores", "1", "-n", *args)
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("\n\n")[0]
    stats = dict(line.split() for line in table.splitlines()[3:] if line.strip())
    stats.pop("total", None)
    return {k: int(v) for k, v in stats.items()}


def checkpoints(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / "results").rglob("*.safetensors"))}


@pytest.fixture(scope="module")
def repo(ci_run, tmp_path_factory):
    """A git repository of the project whose config.yaml is the CI config, holding the CI run.

    Files are copied with their modification times (project files are older than the run), so the
    copy is exactly as up to date as the run itself; no touch is needed to adopt it.
    """
    root = tmp_path_factory.mktemp("dvc") / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, root / rel)
    shutil.copy2(CI_CONFIG, root / "config.yaml")
    shutil.copystat(ROOT / "config.yaml", root / "config.yaml")
    shutil.copytree(ci_run / "results", root / "results")
    shutil.copytree(ci_run / "paper", root / "paper", dirs_exist_ok=True)
    shutil.copytree(ci_run / ".snakemake" / "metadata", root / ".snakemake" / "metadata")
    remote = root.parent / "remote"
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "remote", "modify", "local", "url", str(remote))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "project at the CI config")
    assert planned(root) == {}, "the copied CI run is not complete"
    out = sh(root, "dvc", "repro")
    assert "Nothing to be done" in out, out  # the stage's cmd is Snakemake, which has nothing to do
    sh(root, "git", "add", "dvc.lock")
    sh(root, "git", "commit", "-qm", "dvc.lock of the CI run")
    sh(root, "dvc", "push")
    return root


def test_push_then_pull_in_a_fresh_clone_restores_and_recomputes_nothing(repo, tmp_path):
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "results").exists()
    sh(clone, "dvc", "pull")
    assert checkpoints(clone) == checkpoints(repo) and checkpoints(clone)
    for name in ("metrics.csv", "summary.json"):
        assert (clone / "results/tables" / name).read_bytes() == (repo / "results/tables" / name).read_bytes()
    # dvc pull wrote every file anew, in its own order: Snakemake's mtime trigger sees a mess
    print("planned right after dvc pull (mtimes only):", planned(clone))
    sh(clone, *AFTER_RESTORE)
    assert planned(clone) == {}
    assert checkpoints(clone) == checkpoints(repo)  # touch never runs a rule
    assert "up to date" in sh(clone, "dvc", "status")  # and left DVC's view unchanged
    # Snakemake's records came back with the outputs: a params-only change still replans exactly
    cfg = yaml.safe_load((clone / "config.yaml").read_text())
    cfg["unlearn"]["epochs"] += 1
    changed = tmp_path / "epochs.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    # every arm at the default epochs (the others keep their own), and their evaluations
    exp = Experiment(cfg)
    ids = {(a.dataset, a.model_id) for a in exp.unlearn_jobs() if a.epochs == str(cfg["unlearn"]["epochs"])}
    jobs = planned(clone, "--configfile", str(changed))
    # base-seed arms are rule unlearn, seed replicates (configs/ci.yaml has two seeds) unlearn_seeded
    assert jobs.get("unlearn", 0) + jobs.get("unlearn_seeded", 0) == len(ids)
    # ... and the attacks on them (made again: their parent changed), each evaluated
    attacked = exp.attacks_on(ids)
    assert jobs.get("attack", 0) == len(attacked)
    assert jobs["evaluate"] == sum(1 for ds, mid, _ in exp.evaluations if (ds, mid) in ids | attacked)
    assert "train_base" not in jobs and "prepare_data" not in jobs


def test_exp_run_reruns_only_the_aggregates_and_metrics_diff_shows_it(repo):
    before = {
        p: p.stat().st_mtime_ns
        for p in (repo / "results").rglob("*")
        if p.is_file() and ("/eval/" in str(p) or p.suffix == ".safetensors")
    }
    assert before
    out = sh(repo, "dvc", "exp", "run", "-n", "ga-gdr-only", "-S", "config.yaml:report.utility_constrained=[ga_gdr]")
    ran = {
        line.split()[-1].rstrip(":") for line in out.splitlines() if line.strip().startswith(("rule ", "localrule "))
    }
    assert ran and ran <= {
        "aggregate",
        "aggregate_attacks",  # its table settings include report.utility_constrained
        "paper_attacks",
        "figures",
        "aggregate_quant",
        "paper_numbers",
        "paper_assets",
        "paper_quant",
        "all",
    }, ran
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no model or evaluation recomputed
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", "--json", "HEAD", "ga-gdr-only"))
    ret = pd.read_csv(repo / "results/tables/retention.csv", keep_default_na=False)
    changes = diff["paper/metrics.json"]
    for scheme in ("fp32", "rtn4"):
        entry = changes[f"synth.retention.{scheme}"]
        ga = ret[
            (ret.method == "ga_gdr") & (ret.scheme == scheme) & (ret.headline.astype(str) == "True")
        ].retention.mean()
        assert entry["new"] == pytest.approx(ga, abs=1e-5), entry
        assert entry["old"] != pytest.approx(entry["new"], abs=1e-9), entry
    # back to the committed baseline, and the plot definition renders
    sh(repo, "git", "checkout", "--", "config.yaml", "dvc.lock")
    sh(repo, "dvc", "checkout", "--force")
    sh(repo, "dvc", "plots", "show", "-o", str(repo.parent / "plots"))
    assert "retention_by_scheme" in (repo.parent / "plots" / "index.html").read_text()
