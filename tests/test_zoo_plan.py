"""The zoo's plan (configs/zoo.yaml, configs/zoo-ci.yaml, configs/qa-compare.yaml), without training:
the quantization-aware comparison's arms and schemes, the attacks on them, the deployment's evaluations in metrics.csv's
inputs, the conditional qa_comparison table, and the dry run's job counts, each derived from the
Experiment object."""

import copy

import pytest
import yaml
from conftest import ROOT
from test_workflow import planned_jobs, planned_outputs

from qunlearn import deploy, paths
from qunlearn.experiment import Experiment
from qunlearn.registries import METHODS
from qunlearn.report import catalog

ZOO_CONFIGS = ("configs/zoo.yaml", "configs/zoo-ci.yaml", "configs/qa-compare.yaml")


def load(name):
    with open(ROOT / name) as fh:
        return yaml.safe_load(fh)


def test_qa_compare_compares_each_quantization_aware_method_with_sure_and_a_larger_lr():
    cfg = load("configs/qa-compare.yaml")
    exp = Experiment(cfg)
    methods = set(exp.qa_comparison_methods())
    assert methods == {"ga_gdr", "ga_gdr_sure", "ga_gdr_qa", "npo_gdr", "npo_gdr_sure", "npo_gdr_qa"}
    assert exp.report_conditions() == {"quantization_aware"}
    qa = exp.qa_comparison_for_report()
    arms = [paths.parse_model_id(mid) for _, mid in qa["arms"]]
    # plain, SURE and quantization-aware at one lr per objective: the plain objective's larger lr
    # is its headline arm (so that it is attacked too)
    specs = exp.method_specs
    lrs = {}
    for a in arms:
        lrs.setdefault(specs[a.method].objective or a.method, set()).add(a.lr)
    assert {k: len(v) for k, v in lrs.items()} == {"ga_gdr": 1, "npo_gdr": 1} and len(arms) == 6
    assert all(float(a.lr) > cfg["unlearn"]["lr"] for a in arms)  # all above the default lr
    assert all(a.alpha == paths.SELECTED for a in arms)
    assert qa["min_utility_fraction"] == cfg["unlearn"]["alpha_selection"]["min_utility_fraction"]
    # at full precision, 8 bits and every 4-bit scheme
    four_bit = {s for s, v in exp.schemes.items() if v.nominal_bits == 4}
    assert four_bit == {"rtn4", "bnb_fp4", "bnb_nf4", "gptq", "awq"}
    for _, mid in qa["arms"]:
        assert set(exp.model_schemes("synth", mid)) == set(exp.schemes), mid
    # the attacks: the headline arms of every compared method, i.e. every arm of the comparison
    assert set(exp.attacked_headlines()["synth"]) == methods
    attacked = {paths.parse_model_id(mid).parent for mid in exp.attack_jobs()}
    assert {mid for _, mid in qa["headline"]} == {mid for _, mid in qa["arms"]} <= attacked


def test_without_a_quantization_aware_method_there_is_no_comparison():
    cfg = load("configs/qa-compare.yaml")
    for m in [m for m in cfg["unlearn"]["methods"] if METHODS[m].quantization_aware]:
        del cfg["unlearn"]["methods"][m]
    del cfg["attacks"]
    exp = Experiment(cfg)
    assert exp.qa_comparison_methods() == [] and exp.qa_comparison_for_report() == {}
    assert exp.report_conditions() == frozenset()
    assert Experiment(load("config.yaml")).report_conditions() == frozenset()


def test_metrics_csv_reads_the_deployments_but_no_attacked_model():
    cfg = load("configs/zoo.yaml")  # with a deployment (ihl_fila); attacks as qa-compare.yaml runs them
    cfg["attacks"] = {**load("configs/qa-compare.yaml")["attacks"], "methods": ["npo_gdr"]}
    exp = Experiment(cfg)
    files = set(exp.eval_files(attacked=False))
    assert set(exp.deployment_eval_files()) <= files and exp.deployment_eval_files()
    attacked = {mid for mid in exp.attack_jobs()}
    assert attacked
    for f in files:
        _, mid, _ = paths.parse_eval_file(f)
        assert mid not in attacked
        if paths.parse_model_id(mid).kind == "derived":
            assert deploy.parse(mid) is not None, mid
    assert set(exp.eval_files()) - files == {
        paths.eval_file(ds, mid, s) for ds, mid, s in exp.evaluations if mid in attacked
    }
    # a config without a deployment keeps its inputs
    cfg = load("configs/zoo.yaml")
    del cfg["unlearn"]["methods"]["ihl_fila"]
    plain = Experiment(cfg)
    assert all(paths.parse_model_id(paths.parse_eval_file(f)[1]).kind != "derived" for f in plain.eval_files(False))


def _expected_jobs(exp: Experiment) -> dict[str, int]:
    return {
        "unlearn": len(exp.unlearn_jobs()),
        "evaluate": len(exp.evaluations),
        "attack": len(exp.attack_jobs()),
        "deploy": len(exp.deploy_jobs()),
        "analysis": len(exp.analysis_dirs()),
        "quantize": sum(1 for _, _, s in exp.evaluations if exp.schemes[s].calibrated),
        "select_alpha": len(exp.selection_files()),
        "prepare_method": len(exp.prepare_jobs()),
    }


@pytest.mark.parametrize("config", ZOO_CONFIGS)
def test_the_zoo_dry_run_plans_the_experiments_jobs_and_the_qa_comparison(config):
    exp = Experiment(load(config))
    jobs = planned_jobs("--configfile", config, cwd=ROOT)
    expected = _expected_jobs(exp)
    assert {k: jobs.get(k, 0) for k in expected} == expected
    outputs = planned_outputs("--configfile", config, cwd=ROOT)
    made = {p for line in outputs for p in line.split(", ")}
    qa = catalog.get("table", "qa_comparison")
    assert {qa.path(f) for f in qa.formats} | {qa.paper_path(f) for f in qa.formats} <= made


def test_the_ci_zoo_adds_at_most_three_jobs_for_the_comparison():
    """CI time: the CI zoo's lr-sweep arm (the comparison's larger lr) is one unlearn and
    two evaluate jobs (fp32, rtn4) more than the same config without it."""
    cfg = load("configs/zoo-ci.yaml")
    bare = copy.deepcopy(cfg)
    del bare["sweeps"]
    with_sweep, without = _expected_jobs(Experiment(cfg)), _expected_jobs(Experiment(bare))
    assert sum(with_sweep.values()) - sum(without.values()) == 3


def test_a_config_without_a_quantization_aware_method_plans_no_qa_comparison():
    outputs = planned_outputs("--configfile", "configs/ci.yaml", cwd=ROOT)
    assert not any("qa_comparison" in line for line in outputs)
