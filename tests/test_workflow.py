"""Workflow-level checks that need no training: the planned job set, lint, config errors."""

import re
import subprocess
import sys

import yaml

from conftest import ROOT


def snakemake(*args, cwd=ROOT, check=True):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(*args, cwd=ROOT) -> dict[str, int]:
    out = snakemake("-n", "--forceall", *args, cwd=cwd).stdout
    table = out.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dry_run_plans_the_default_grid(default_config):
    jobs = planned_jobs()
    n_schemes = len(default_config["quantize"]["schemes"])
    n_methods = len(default_config["unlearn"]["methods"])
    n_plain = len(default_config["datasets"]["synth_plain"]["methods"])
    assert jobs == {
        "prepare_data": 1,  # synth_plain reuses synth's data
        "train_base": 2,  # target + retrain, shared by both datasets
        "release": 4,  # target/retrain x (snapped, as trained)
        "unlearn": n_methods + n_plain,
        "evaluate": (2 + n_methods + 2 + n_plain) * n_schemes,
        "aggregate": 1,
        "figures": 1,
        "paper_numbers": 1,
        "paper_includes": 1,
        "paper_assets": 1,
        "all": 1,
        "total": 1 + 2 + 4 + n_methods + n_plain + (4 + n_methods + n_plain) * n_schemes + 6,
    }


def test_dry_run_with_another_configfile_uses_that_file_alone(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1, 5]}}
    cfg["unlearn"]["lrs"] = [1e-5, 3e-5]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs("--configfile", str(path))
    assert jobs["unlearn"] == 4 and jobs["evaluate"] == (2 + 4) * 3 and jobs["release"] == 2


def test_lint_is_clean():
    proc = snakemake("--lint")
    out = proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in out, out


def test_bad_config_fails_at_parse_time_naming_the_key(tmp_path, default_config):
    default_config["unlearn"]["methods"]["ga_gdr"]["alpha"] = [1]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(default_config))
    proc = snakemake("-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0
    assert "alpha" in proc.stdout + proc.stderr
    default_config["unlearn"]["methods"]["ga_gdr"] = {"alphas": [1]}
    default_config["report"]["figure_schemes"] = ["rtn3"]
    path.write_text(yaml.safe_dump(default_config))
    proc = snakemake("-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0 and "report.figure_schemes" in proc.stdout + proc.stderr
