"""The method zoo at CI size through Snakemake (configs/zoo-ci.yaml): every zoo method unlearned,
evaluated at full precision and 4-bit RTN, one row per method in the zoo table (and one for
ihl_fila's quantized-base deployment), and the qa_comparison table's rows. Minutes on 2 cores (sized
from the default run's per-job benchmarks: a 2-layer model on 40 people)."""

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake

from qunlearn import deploy
from qunlearn.experiment import Experiment
from qunlearn.registries import METHODS

pytestmark = pytest.mark.e2e

ZOO_CI = ROOT / "configs" / "zoo-ci.yaml"


def load(name):
    with open(ROOT / "configs" / name) as fh:
        return yaml.safe_load(fh)


def test_the_ci_zoo_has_every_zoo_method_and_two_schemes():
    """Cheap: the CI config's methods are the zoo's, one alpha each (no grid), fp32 + rtn4; of the
    qa_comparison's SURE and quantization-aware variants (spec traits) it keeps one (CI time)."""
    ci, zoo = load("zoo-ci.yaml"), load("zoo.yaml")
    ci_methods, zoo_methods = list(ci["unlearn"]["methods"]), list(zoo["unlearn"]["methods"])
    assert set(ci_methods) <= set(zoo_methods)
    left_out = set(zoo_methods) - set(ci_methods)
    assert all(METHODS[m].saliency_masked or METHODS[m].quantization_aware for m in left_out), left_out
    assert any(METHODS[m].quantization_aware for m in ci_methods)
    assert all(len(v.get("alphas") or [1]) == 1 for v in ci["unlearn"]["methods"].values())
    assert set(ci["quantize"]["schemes"]) == {"fp32", "rtn4"}


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("zoo-e2e")
    run_snakemake(workdir, configfile=ZOO_CI, timeout=1200)
    return workdir


def test_every_zoo_method_is_evaluated_and_has_its_zoo_row(zoo_run):
    cfg = load("zoo-ci.yaml")
    methods = list(cfg["unlearn"]["methods"])
    schemes = list(cfg["quantize"]["schemes"])
    for method in methods:
        for scheme in schemes:
            found = list((zoo_run / "results/synth/eval/unlearn" / method).rglob(f"{scheme}.json"))
            assert found, f"no {scheme} evaluation of {method}"
    zoo = pd.read_csv(zoo_run / "results/tables/zoo.csv", keep_default_na=False, na_values=[""])
    # one row per method, and one per deployment mode of a method whose spec declares deployments
    deployments = [f"{m} ({deploy.MODE_LABELS[mode]})" for m in methods for mode in METHODS[m].deployments]
    assert deployments == ["ihl_fila (quantized base + fp adapter)"]
    assert sorted(zoo.method) == sorted(methods + deployments) and len(zoo) == len(methods) + len(deployments)
    assert {"retention_fp32", "retention_rtn4", "m4_rel", "pct_codes_changed_rtn4"} <= set(zoo.columns)
    assert zoo.retention_fp32.notna().all() and zoo.retention_rtn4.notna().all() and zoo.m4_rel.notna().all()
    z = zoo.set_index("method")
    # at full precision the two deployments are the same model (tests/test_lora_fila.py)
    assert z.retention_fp32[deployments[0]] == pytest.approx(z.retention_fp32["ihl_fila"], abs=0.05)
    assert pd.isna(z.pct_codes_changed_rtn4[deployments[0]])  # not analysed
    assert (zoo_run / "paper/tables/zoo.tex").read_bytes() == (zoo_run / "results/tables/zoo.tex").read_bytes()
    # the deployment's rows are in metrics.csv, never among the headline rows; no attacked model is
    metrics = pd.read_csv(zoo_run / "results/tables/metrics.csv", keep_default_na=False)
    dep = metrics[metrics.model == "deployment"]
    assert len(dep) and not dep.headline.astype(str).eq("True").any()
    assert set(metrics.model) <= {"target", "retrain", "unlearn", "deployment"}
    t1 = pd.read_csv(zoo_run / "results/tables/table1.csv", keep_default_na=False)
    assert not t1.row.str.contains("deploy", case=False).any()


def test_the_qa_comparison_table_has_a_row_per_arm(zoo_run):
    """One row per arm of the quantization-aware method, its objective and SURE variant (the
    Experiment's arms: headline and lr sweep), M4 against the utility floor, retention at every
    4-bit scheme (the lr-sweep arm at fp32 and rtn4)."""
    exp = Experiment(load("zoo-ci.yaml"))
    qa = exp.qa_comparison_for_report()
    table = pd.read_csv(zoo_run / "results/tables/qa_comparison.csv", keep_default_na=False, na_values=[""])
    assert len(table) == len(qa["arms"]) == 3
    assert list(table.variant) == ["plain", "plain", "quantization-aware"]
    assert list(table.method) == ["npo_gdr", "npo_gdr", "npo_gdr_qa"] and set(table.objective) == {"npo_gdr"}
    assert [float(x) for x in table.lr] == [3e-05, 1e-3, 1e-3]
    assert {"m4_rel", "meets_utility", "retention_fp32", "retention_rtn4"} <= set(table.columns)
    assert "robust_worst" not in table  # no attacks in the CI zoo
    assert table.retention_fp32.notna().all() and table.m4_rel.notna().all()
    assert table.retention_rtn4.notna().all()
    floor = qa["min_utility_fraction"]
    assert [str(m) == "True" for m in table.meets_utility] == [float(v) >= floor for v in table.m4_rel]
    assert (zoo_run / "paper/tables/qa_comparison.tex").read_bytes() == (
        zoo_run / "results/tables/qa_comparison.tex"
    ).read_bytes()
    assert "qa_comparison" in (zoo_run / "paper/tables.tex").read_text()
