"""Planning of the recovery attacks (torch-free): which attack jobs and evaluations a config asks
for, their ids and params, and the config-time errors for bad input. Counted by hand from the
config, not from the planner's own helpers."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT
from test_workflow import planned_jobs

from qunlearn import paths
from qunlearn.config import ConfigError
from qunlearn.experiment import Experiment

ATTACKS = {
    "schemes": ["fp32", "rtn4"],
    "runs": {
        "relearn": {"steps": [10, 20]},
        "heldout_relearn": {"steps": [20]},
        "prune": {"sparsities": [0.3]},
        "noise": {"c": [0.5, 1.0]},
        "interpolate": {"lambdas": [0.25, 0.5, 0.75]},
    },
}


@pytest.fixture
def config(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["attacks"] = copy.deepcopy(ATTACKS)
    return cfg


def expected_jobs(cfg) -> int:
    """Hand count: every point of every attack on the utility-constrained methods' headline arms of
    each dataset with its own data, plus the controls (both bases; interpolation the retrain
    model only)."""
    n_methods = len(cfg["report"]["utility_constrained"])
    own = [d for d, ds in cfg["datasets"].items() if ds.get("source") != "reuse"]
    points = {"relearn": 2, "heldout_relearn": 1, "prune": 1, "noise": 2, "interpolate": 3}
    controls = {"relearn": 2, "heldout_relearn": 2, "prune": 2, "noise": 2, "interpolate": 1}
    return len(own) * sum(points[a] * (n_methods + controls[a]) for a in cfg["attacks"]["runs"])


def test_the_planner_applies_every_point_to_the_arms_and_controls(config):
    exp = Experiment(config)
    jobs = exp.attack_jobs()
    assert len(jobs) == len(set(jobs)) == expected_jobs(config) == 51
    parents = {paths.parse_model_id(j).parent for j in jobs}
    headline = {a.model_id for a in exp.headline_arms("synth") if a.method in config["report"]["utility_constrained"]}
    assert parents == headline | {"target", "retrain"}
    # interpolation toward the target is not applied to the target itself
    assert not [j for j in jobs if j.startswith("derived/interpolate/") and j.endswith("/of/target")]
    # every attacked model and its parent are evaluated at both attack schemes
    evals = set(exp.evaluations)
    for j in jobs:
        for s in ("fp32", "rtn4"):
            assert ("synth", j, s) in evals
    # the headline tables' metrics.csv leaves the attacked models to the attack tables
    assert not [f for f in exp.eval_files(attacked=False) if "/derived/" in f]
    assert len(exp.eval_files()) - len(exp.eval_files(attacked=False)) == 2 * len(jobs)


def test_ids_round_trip_and_params_leave_out_the_grid(config):
    exp = Experiment(config)
    mid = next(j for j in exp.attack_jobs() if j.startswith("derived/relearn/steps~20/"))
    parts = paths.parse_model_id(mid)
    assert (parts.transform, dict(parts.settings)) == ("relearn", {"steps": "20"})
    params = exp.attack_params(mid)
    assert params["point"] == {"steps": "20"} and "steps" not in params["settings"]
    assert params["settings"]["lr"] == 1e-5  # the source's default
    # adding a point leaves the other points' jobs (ids and params) as they were
    more = copy.deepcopy(config)
    more["attacks"]["runs"]["relearn"]["steps"] = [10, 20, 40]
    exp2 = Experiment(more)
    assert set(exp.attack_jobs()) < set(exp2.attack_jobs())
    assert exp2.attack_params(mid) == params
    # the output path of a derived model parses back through the grammar
    path = paths.model_dir("synth", mid)
    assert paths.parse(paths.MODEL, path)["model_id"] == mid


def test_a_finetuning_attack_always_has_its_retrain_control(config):
    config["attacks"]["controls"] = []
    exp = Experiment(config)
    relearned = {paths.parse_model_id(j).parent for j in exp.attack_jobs() if "/relearn/" in j}
    noised = {paths.parse_model_id(j).parent for j in exp.attack_jobs() if j.startswith("derived/noise/")}
    assert "retrain" in relearned and "target" not in relearned
    assert not noised & {"retrain", "target"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a["runs"]["prune"].update(sparsities=[1.2]), "attacks.runs.prune.sparsities"),
        (lambda a: a["runs"]["prune"].update(sparsities=[0]), "attacks.runs.prune.sparsities"),
        # "2:4" unquoted is YAML 1.1's base-60 124: the error says how the pattern is written
        (
            lambda a: a["runs"]["prune"].update(sparsities=yaml.safe_load("[2:4]")),
            "attacks.runs.prune.sparsities.*2of4",
        ),
        (lambda a: a["runs"]["prune"].update(sparsities=["2:4"]), "attacks.runs.prune.sparsities.*2of4"),
        (lambda a: a["runs"]["prune"].update(calibration_split="forget"), "attacks.runs.prune.calibration_split"),
        (
            lambda a: (
                a["runs"]["benign_finetune"].update(split="forget")
                if "benign_finetune" in a["runs"]
                else a["runs"].update(benign_finetune={"split": "forget"})
            ),
            "attacks.runs.benign_finetune.split",
        ),
        (lambda a: a["runs"]["relearn"].update(fraction=0.001), "attacks.runs.relearn.fraction"),
        (lambda a: a["runs"]["relearn"].update(fraction=0), "attacks.runs.relearn.fraction"),
        (lambda a: a.update(methods=["rmu_nonexistent"]), "attacks.methods"),
        (lambda a: a.update(schemes=["rtn5"]), "attacks.schemes"),
        (lambda a: a.update(datasets=["nope"]), "attacks.datasets"),
        (lambda a: a["runs"].update(unknown_attack={}), "attacks.runs.unknown_attack"),
        (lambda a: a["runs"]["noise"].update(c=[0.5, 0.5]), "attacks.runs.noise.c"),
    ],
)
def test_bad_attack_input_is_a_config_error_naming_the_key(config, edit, message):
    edit(config["attacks"])
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace(r"\.*", ".*")):
        Experiment(config)


def test_the_2_4_pattern_survives_a_yaml_round_trip(config):
    """DVC's `exp run -S` rewrites config.yaml without quotes: the pattern's text must stay a string."""
    config["attacks"]["runs"]["prune"]["sparsities"] = [0.5, "2of4"]
    again = yaml.safe_load(yaml.safe_dump(config, default_style=None).replace("'2of4'", "2of4"))
    exp = Experiment(again)
    assert {j.split("/of/")[0] for j in exp.attack_jobs() if j.startswith("derived/prune/")} == {
        "derived/prune/criterion~magnitude/sparsity~0.5",
        "derived/prune/criterion~magnitude/sparsity~2of4",
    }


def test_heldout_relearning_needs_a_dataset_that_declares_entities(config):
    config["datasets"]["news"] = {"source": "muse", "muse": {}}
    config["attacks"]["datasets"] = ["news"]
    with pytest.raises(ConfigError, match=r"attacks\.runs\.heldout_relearn: dataset 'news'"):
        Experiment(config)


def test_the_dry_run_plans_the_attack_jobs_the_experiment_counts(tmp_path, config):
    path = tmp_path / "attacks.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = planned_jobs("--configfile", str(path), cwd=ROOT)
    exp = Experiment(config)
    assert jobs["attack"] == len(exp.attack_jobs()) == expected_jobs(config)
    assert jobs["evaluate"] == len(exp.evaluations)
    assert jobs["aggregate_attacks"] == 1
