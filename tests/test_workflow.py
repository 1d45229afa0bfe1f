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
    schemes = default_config["quantize"]["schemes"]
    n_schemes = len(schemes)
    n_plain_schemes = len(default_config["datasets"]["synth_plain"]["schemes"])
    calibrated = [s for s, v in schemes.items() if v["quantizer"] in ("gptq", "awq")]
    n_cal_plain = len([s for s in calibrated if s in default_config["datasets"]["synth_plain"]["schemes"]])
    n_methods = len(default_config["unlearn"]["methods"])
    n_plain = len(default_config["datasets"]["synth_plain"]["methods"])
    evaluate = (2 + n_methods) * n_schemes + (2 + n_plain) * n_plain_schemes
    quantize = (2 + n_methods) * len(calibrated) + (2 + n_plain) * n_cal_plain
    analysis = n_methods + n_plain  # one per unlearned model (it writes one JSON per scheme)
    assert jobs == {
        "prepare_data": 1,  # synth_plain reuses synth's data
        "train_base": 2,  # target + retrain, shared by both datasets
        "release": 4,  # target/retrain x (snapped, as trained)
        "unlearn": n_methods + n_plain,
        "quantize": quantize,  # one per (model, calibrated scheme): GPTQ and AWQ
        "evaluate": evaluate,
        "analysis": analysis,
        "aggregate": 1,
        "aggregate_quant": 1,
        "paper": 1,
        "paper_quant": 1,
        "all": 1,
        "total": 1 + 2 + 4 + n_methods + n_plain + quantize + evaluate + analysis + 5,
    }
    assert len(calibrated) == 2 and quantize == 28


def test_dry_run_plans_quantize_and_analysis_jobs_for_calibrated_schemes_only(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1]}}
    cfg["quantize"]["schemes"] = {"fp32": {"quantizer": "none"}, "nf4": {"quantizer": "bnb_nf4"},
                                  "gptq": {"quantizer": "gptq"}}
    cfg["report"]["figure_schemes"] = ["fp32"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "--forceall", "--configfile", str(path)).stdout
    quant = sorted(set(re.findall(r"output: (results/synth/quant/\S+)", out)))
    assert quant == ["results/synth/quant/retrain/gptq", "results/synth/quant/target/gptq",
                     "results/synth/quant/unlearn/ga_gdr/alpha~1/lr~3e-05/gptq"]
    analyses = re.findall(r"input: (.*)\n\s+output: (results/synth/analysis/\S+)", out)
    assert len(analyses) == 1 and analyses[0][1] == "results/synth/analysis/unlearn/ga_gdr/alpha~1/lr~3e-05"
    assert analyses[0][0].split(", ") == [
        "results/synth/models/target", "results/synth/models/unlearn/ga_gdr/alpha~1/lr~3e-05",
        "results/synth/quant/target/gptq", "results/synth/quant/unlearn/ga_gdr/alpha~1/lr~3e-05/gptq"]
    # the gptq evaluation reads the quantized checkpoint, the nf4 one the model itself
    assert re.search(r"input: results/synth/quant/target/gptq, results/synth/data\n\s+output: "
                     r"results/synth/eval/target/gptq.json", out)
    assert re.search(r"input: results/synth/models/target, results/synth/data\n\s+output: "
                     r"results/synth/eval/target/nf4.json", out)


def test_dry_run_with_another_configfile_uses_that_file_alone(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1, 5]}}
    cfg["unlearn"]["lrs"] = [1e-5, 3e-5]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs("--configfile", str(path))
    n_schemes = len(cfg["quantize"]["schemes"])
    assert jobs["unlearn"] == 4 and jobs["evaluate"] == (2 + 4) * n_schemes and jobs["release"] == 2


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
    default_config["report"]["figure_schemes"] = ["rtn5"]
    path.write_text(yaml.safe_dump(default_config))
    proc = snakemake("-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0 and "report.figure_schemes" in proc.stdout + proc.stderr
