"""The method zoo at CI size through Snakemake (configs/zoo-ci.yaml): every zoo method unlearned,
evaluated at full precision and 4-bit RTN, and one row per method in the zoo table. Minutes on 2
cores (sized from the default run's per-job benchmarks: a 2-layer model on 40 people)."""

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.e2e

ZOO_CI = ROOT / "configs" / "zoo-ci.yaml"


def load(name):
    with open(ROOT / "configs" / name) as fh:
        return yaml.safe_load(fh)


def test_the_ci_zoo_has_every_zoo_method_and_two_schemes():
    """Cheap: the CI config's methods are the zoo's, one alpha each (no grid), fp32 + rtn4."""
    ci, zoo = load("zoo-ci.yaml"), load("zoo.yaml")
    assert list(ci["unlearn"]["methods"]) == list(zoo["unlearn"]["methods"])
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
    assert sorted(zoo.method) == sorted(methods) and len(zoo) == len(methods)
    assert {"retention_fp32", "retention_rtn4", "m4_rel", "pct_codes_changed_rtn4"} <= set(zoo.columns)
    assert zoo.retention_fp32.notna().all() and zoo.retention_rtn4.notna().all()
    assert (zoo_run / "paper/tables/zoo.tex").read_bytes() == (zoo_run / "results/tables/zoo.tex").read_bytes()
