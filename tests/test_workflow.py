"""Workflow-level checks that need no training: the planned job set, lint, config errors."""

import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from qunlearn.configfile import load_config_files
from qunlearn.experiment import Experiment


def snakemake(*args, cwd=ROOT, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(*args, cwd=ROOT) -> dict[str, int]:
    out = snakemake("-n", "--forceall", *args, cwd=cwd).stdout
    table = out.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def planned_outputs(*args, cwd=ROOT) -> set[str]:
    out = snakemake("-n", "--forceall", *args, cwd=cwd).stdout
    return set(re.findall(r"^\s*output: (.+)$", out, re.M))


def _n_values(values, default):
    """How many arms a sweep adds beyond the headline arm: its values other than the default."""
    return len({float(v) if not isinstance(v, str) else v for v in values} - {default})


@pytest.mark.parametrize("overlays", [[], ["configs/overlays/full.yaml"]], ids=["default", "full"])
def test_dry_run_plans_the_default_grid(overlays):
    """Counted from the config by hand (not with qunlearn.plan): grid, headline arms, sweeps; the
    default alone and with the full overlay (``--configfile config.yaml configs/overlays/full.yaml``)."""
    files = ["config.yaml", *overlays]
    default_config = load_config_files([ROOT / f for f in files])
    jobs = planned_jobs("--configfile", *files)
    unl, sweeps = default_config["unlearn"], default_config.get("sweeps") or {}
    assert bool(sweeps) == bool(overlays)  # the sweeps live in the overlay only
    methods = unl["methods"]
    schemes = default_config["quantize"]["schemes"]
    n_schemes = len(schemes)
    plain_schemes = default_config["datasets"]["synth_plain"]["schemes"]
    calibrated = [s for s, v in schemes.items() if v["quantizer"] in ("gptq", "awq")]
    n_cal_plain = len([s for s in calibrated if s in plain_schemes])
    n_plain = len(default_config["datasets"]["synth_plain"]["methods"])
    grid = sum(len(m["alphas"]) for m in methods.values() if len(m.get("alphas", [])) > 1)
    lr_of = lambda m: float(methods[m].get("lr", unl["lr"]))  # noqa: E731
    extra_sweep_arms = (
        {
            "lr": sum(_n_values(sweeps["lr"]["lrs"], lr_of(m)) for m in sweeps["lr"]["methods"]),
            "epochs": sum(
                _n_values(sweeps["epochs"]["epochs"], float(unl["epochs"])) for m in sweeps["epochs"]["methods"]
            ),
            "loss_variant": sum(
                _n_values(sweeps["loss_variant"]["variants"], unl["loss_variant"])
                for m in sweeps["loss_variant"]["methods"]
            ),
        }
        if sweeps
        else {}
    )
    n_unlearn = grid + len(methods) + n_plain + sum(extra_sweep_arms.values())
    # bases and headline arms at their dataset's schemes (a method's `schemes` narrows its own);
    # grid and sweep arms at their study's
    own = {m: [s for s in schemes if s in (v.get("schemes") or schemes)] for m, v in methods.items()}
    n_eval = (
        2 * n_schemes
        + sum(len(own[m]) for m in methods)
        + (2 + n_plain) * len(plain_schemes)
        + grid * len(unl["alpha_selection"]["schemes"])
        + sum(n * len(sweeps[s]["schemes"]) for s, n in extra_sweep_arms.items())
    )
    assert not set(calibrated) & {s for k in sweeps for s in sweeps[k]["schemes"]}
    quantize = (
        2 * len(calibrated) + sum(len(set(own[m]) & set(calibrated)) for m in methods) + (2 + n_plain) * n_cal_plain
    )
    analysis = len(methods) + n_plain  # one per headline arm (it writes one JSON per scheme)
    # recovery attacks (synth only: synth_plain reuses its data): every point on the four
    # utility-constrained headline arms and the controls, each evaluated at the attack schemes
    # (every attacked parent is already evaluated there)
    atk = default_config["attacks"]
    points = {
        a: len(next(v for k, v in s.items() if isinstance(v, list) and k not in ("criteria",)))
        for a, s in atk["runs"].items()
    }
    controls = {"interpolate": 1}  # the retrain model only (the target's would be the identity)
    n_attack = sum(
        n * (len(default_config["report"]["utility_constrained"]) + controls.get(a, 2)) for a, n in points.items()
    )
    assert set(atk["schemes"]) <= set(own["ga_gdr"]) and n_attack == 51
    n_eval += n_attack * len(atk["schemes"])
    n_select = sum(1 for m in methods.values() if "alphas" in m)  # SURE methods reuse their objective's
    assert jobs == {
        "prepare_data": 1,  # synth_plain reuses synth's data
        "train_base": 2,  # target + retrain, shared by both datasets
        "release": 4,  # target/retrain x (snapped, as trained)
        "select_alpha": n_select,  # synth_plain takes synth's selections
        "unlearn": n_unlearn,
        "quantize": quantize,  # one per (model, calibrated scheme): GPTQ and AWQ
        "evaluate": n_eval,
        "analysis": analysis,
        "aggregate": 1,
        "aggregate_quant": 1,
        "figures": 1,
        "paper_numbers": 1,
        "paper_includes": 1,
        "paper_assets": 1,
        "paper_quant": 1,
        "attack": n_attack,
        "aggregate_attacks": 1,
        "paper_attacks": 1,
        "all": 1,
        "total": 1 + 2 + 4 + n_select + n_unlearn + quantize + n_eval + analysis + n_attack + 10,
    }
    assert len(calibrated) == 2
    assert any(len(own[m]) < n_schemes for m in methods)  # the default narrows some (SURE) arms


def test_a_methods_schemes_narrow_only_its_headline_arm(full_config):
    """unlearn.methods.<m>.schemes: its headline arm is evaluated (and quantized, analysed) at those
    schemes only; the bases, other methods and its sweep arms keep theirs."""
    m = "npo_gdr_sure"
    full_config["unlearn"]["methods"][m]["schemes"] = ["fp32", "rtn4", "gptq"]
    exp = Experiment(full_config)
    head = exp.headline_arm("synth", m).model_id
    assert set(exp.model_schemes("synth", head)) == {"fp32", "rtn4", "gptq"}
    assert set(exp.model_schemes("synth", "target")) == set(full_config["quantize"]["schemes"])
    assert {
        s for ds, mid, s in exp.evaluations if mid == exp.headline_arm("synth", "npo_gdr").model_id and ds == "synth"
    } == set(full_config["quantize"]["schemes"])
    sweep = [a for a in exp.study_arms("lr") if a.method == m and a.model_id != head]
    assert sweep and all(
        set(exp.model_schemes("synth", a.model_id)) == set(full_config["sweeps"]["lr"]["schemes"]) for a in sweep
    )
    assert head in exp.analysis_model_ids("synth")
    assert set(exp.analysis_params("synth", head)) == {"fp32", "rtn4", "gptq"}
    assert set(exp.analysis_inputs("synth", head)) == {"target", "unlearned", "target_gptq", "unlearned_gptq"}


def test_dry_run_plans_quantize_and_analysis_jobs_for_calibrated_schemes_only(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg.pop("sweeps", None)
    del cfg["attacks"]  # (counted in test_attack_plan.py)
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1]}}
    cfg["report"]["utility_constrained"] = ["ga_gdr"]
    cfg["unlearn"]["alpha_selection"] = {"schemes": ["fp32"]}
    cfg["report"]["quantized_scheme"] = "nf4"
    cfg["quantize"]["schemes"] = {
        "fp32": {"quantizer": "none"},
        "nf4": {"quantizer": "bnb_nf4"},
        "gptq": {"quantizer": "gptq"},
    }
    cfg["report"]["figure_schemes"] = ["fp32"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = snakemake("-n", "--forceall", "--configfile", str(path)).stdout
    quant = sorted(set(re.findall(r"output: (results/synth/quant/\S+)", out)))
    assert quant == [
        "results/synth/quant/retrain/gptq",
        "results/synth/quant/target/gptq",
        "results/synth/quant/unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful/gptq",
    ]
    analyses = re.findall(r"input: (.*)\n\s+output: (results/synth/analysis/\S+)", out)
    assert (
        len(analyses) == 1
        and analyses[0][1] == "results/synth/analysis/unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
    )
    assert analyses[0][0].split(", ") == [
        "results/synth/models/target",
        "results/synth/models/unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful",
        "results/synth/quant/target/gptq",
        "results/synth/quant/unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful/gptq",
    ]
    # the gptq evaluation reads the quantized checkpoint, the nf4 one the model itself
    assert re.search(
        r"input: results/synth/quant/target/gptq, results/synth/data\n\s+output: "
        r"results/synth/eval/target/gptq.json",
        out,
    )
    assert re.search(
        r"input: results/synth/models/target, results/synth/data\n\s+output: "
        r"results/synth/eval/target/nf4.json",
        out,
    )


def test_sweeps_plan_exactly_the_arms_the_config_asks_for(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1, 5]}, "npo_gdr": {"alphas": [1]}, "ga_gdr_sure": {"lr": 1e-3}}
    cfg["report"]["utility_constrained"] = ["ga_gdr", "npo_gdr"]
    cfg["unlearn"]["alpha_selection"] = {"schemes": ["fp32"]}
    cfg["sweeps"] = {
        "lr": {"methods": ["ga_gdr_sure"], "lrs": [3e-5, 1e-3], "schemes": ["rtn4"]},
        "epochs": {"methods": ["npo_gdr"], "epochs": [1, 40], "schemes": ["fp32"]},
        "loss_variant": {"methods": ["npo_gdr"], "variants": ["paper_code"]},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    outs = planned_outputs("--configfile", str(path))
    arm = "results/synth/models/unlearn/{}/alpha~{}/lr~{}/epochs~{}/loss~{}"
    assert {o for o in outs if "/models/unlearn/" in o} == {
        arm.format("ga_gdr", 1, "3e-05", 40, "faithful"),  # the grid
        arm.format("ga_gdr", 5, "3e-05", 40, "faithful"),
        arm.format("ga_gdr", "selected", "3e-05", 40, "faithful"),  # headline arms
        arm.format("npo_gdr", "selected", "3e-05", 40, "faithful"),
        arm.format("ga_gdr_sure", "selected", "0.001", 40, "faithful"),
        arm.format("ga_gdr_sure", "selected", "3e-05", 40, "faithful"),  # lr sweep (0.001 is headline)
        arm.format("npo_gdr", "selected", "3e-05", 1, "faithful"),  # epochs (40 is headline)
        arm.format("npo_gdr", "selected", "3e-05", 40, "paper_code"),  # loss variant
    }
    assert {o for o in outs if "/selection/" in o} == {
        "results/synth/selection/ga_gdr.json",
        "results/synth/selection/npo_gdr.json",
    }
    evals = {o for o in outs if "/eval/unlearn/" in o}
    assert (
        "results/synth/eval/"
        + arm.format("ga_gdr_sure", "selected", "3e-05", 40, "faithful")[len("results/synth/models/") :]
        + "/rtn4.json"
        in evals
    )
    # sweep arms are evaluated at their sweep's schemes only, grid arms at the selection's
    n_schemes = len(cfg["quantize"]["schemes"])  # headline arms: every scheme
    assert len(evals) == 3 * n_schemes + 2 * 1 + 1 * 1 + 1 * 1 + 1 * 2


def test_dry_run_with_another_configfile_uses_that_file_alone(tmp_path, default_config):
    cfg = default_config
    del cfg["datasets"]["synth_plain"]
    cfg.pop("sweeps", None)
    del cfg["attacks"]  # (counted in test_attack_plan.py)
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [1, 5]}}
    cfg["report"]["utility_constrained"] = ["ga_gdr"]
    cfg["unlearn"]["lr"] = 1e-5
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs("--configfile", str(path))
    n_schemes = len(cfg["quantize"]["schemes"])
    n_sel = len(cfg["unlearn"]["alpha_selection"]["schemes"])
    assert jobs["unlearn"] == 3 and jobs["release"] == 2 and jobs["select_alpha"] == 1
    assert jobs["evaluate"] == (2 + 1) * n_schemes + 2 * n_sel


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


def test_two_seeds_replicate_only_the_headline_arms_of_the_seeded_methods(tmp_path):
    """configs/ci.yaml's `seeds`: each seeded method's headline arm once more per extra seed
    (unlearn_seeded), evaluated at its schemes, calibrated with its own GPTQ/AWQ, analysed; the
    bases, grids, selections and studies are not replicated. Counted from the experiment object
    against the same config without `seeds`."""
    with open(ROOT / "configs/ci.yaml") as fh:
        cfg = yaml.safe_load(fh)
    assert cfg["seeds"]["values"] == [0, 1]
    one = {k: v for k, v in cfg.items() if k != "seeds"}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(one))
    exp = Experiment(cfg)
    reps = exp.replicate_arms()
    assert sorted(a.method for a in reps) == sorted(cfg["seeds"]["methods"]) and {a.seed for a in reps} == {"1"}
    assert all("/seed~1/" in a.model_id and a.alpha == "selected" for a in reps)
    n_eval = sum(len(exp.headline_schemes(a.dataset, a.method)) for a in reps)
    n_quant = sum(len(exp.calibrated_schemes(a.dataset, a.model_id)) for a in reps)
    base, two = planned_jobs("--configfile", str(path)), planned_jobs("--configfile", "configs/ci.yaml")
    added = {k: two[k] - base.get(k, 0) for k in two if two[k] != base.get(k, 0)}
    extra = {"unlearn_seeded": len(reps), "evaluate": n_eval, "quantize": n_quant, "analysis": len(reps)}
    assert added == {**extra, "total": sum(extra.values())}
    assert added == {"unlearn_seeded": 2, "evaluate": 18, "quantize": 4, "analysis": 2, "total": 26}
    # a replicate reads the base seed's selection and trains (it copies no grid arm of the base seed)
    inputs = exp.unlearn_inputs(reps[0])
    assert "selection" in inputs and not any(k.startswith("twin_") for k in inputs)
    # its own seed: unlearning, evaluation and calibration
    assert exp.model_seed(reps[0].model_id) == 1 and exp.model_seed(reps[0].replace(seed="").model_id) == 0
    cal = exp.calibrated_scheme_names()[0]
    assert (
        exp.quantize_params(reps[0].model_id, cal)["calibration_seed"] == exp.scheme_params(cal)["calibration_seed"] + 2
    )
    assert exp.quantize_params("target", cal) == exp.scheme_params(cal)


def test_one_seed_keeps_every_id_and_param(default_config):
    """`seeds: [seed]` is the config without `seeds`: the same ids, evaluations and job params."""
    plain, seeded = Experiment(default_config), Experiment({**default_config, "seeds": [default_config["seed"]]})
    assert plain.unlearn_jobs() == seeded.unlearn_jobs() and plain.evaluations == seeded.evaluations
    assert not any("seed~" in mid for _, mid, _ in plain.evaluations)
    assert {plain.model_seed(a.model_id) for a in plain.unlearn_jobs()} == {default_config["seed"]}


def test_seeds_must_contain_the_base_seed(default_config):
    import pytest

    from qunlearn.config import ConfigError

    with pytest.raises(ConfigError, match="seeds.values: must contain the base seed"):
        Experiment({**default_config, "seeds": [7, 8]})
    with pytest.raises(ConfigError, match="seeds.methods"):
        Experiment({**default_config, "seeds": {"values": [0, 1], "methods": ["nope"]}})
