"""One real run of the CI-sized config through Snakemake: the phenomenon's direction, the tables and
figures, determinism and meta.json. Minutes on 2 cores; the run is shared by the tests below."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.e2e
CI_CONFIG = ROOT / "configs" / "ci.yaml"


def run_snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", str(CI_CONFIG),
           "--directory", str(workdir), "--snakefile", str(ROOT / "Snakefile"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in (workdir / "logs").rglob("*.log"))
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr[-5000:]}\n{logs}")
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    run_snakemake(workdir)
    return workdir


def test_tables_and_figures_exist(run):
    for name in ("metrics.csv", "table1.csv", "table1.md", "table1.tex", "retention.csv", "summary.json"):
        assert (run / "results/tables" / name).stat().st_size > 0
        assert (run / "paper/tables" / name).read_bytes() == (run / "results/tables" / name).read_bytes()
    for name in ("m1_m2_by_scheme.png", "m1_m2_by_scheme.pdf", "retention_vs_bits.png", "codes_changed_vs_bits.pdf"):
        assert (run / "paper/figures" / name).stat().st_size > 1000
    for name in ("table2_3_gptq_awq.md", "retention_by_bits.csv", "weight_change.csv"):
        assert (run / "paper/tables" / name).read_bytes() == (run / "results/tables" / name).read_bytes()
    rb = pd.read_csv(run / "results/tables/retention_by_bits.csv", keep_default_na=False)
    assert set(rb.scheme) == set(_CI["quantize"]["schemes"])  # every backend reached the tables
    wc = pd.read_csv(run / "results/tables/weight_change.csv", keep_default_na=False)
    overall = wc[wc.scope == "overall"].set_index(["method", "scheme"])
    assert set(overall.index.get_level_values("scheme")) == set(_CI["quantize"]["schemes"])
    assert (overall.cosine > 0.9).all() and (overall.frac_codes_changed <= 1).all()
    m = pd.read_csv(run / "results/tables/metrics.csv", keep_default_na=False)
    assert list(m.columns) == ["dataset", "model", "method", "alpha", "lr", "scheme", "metric", "value"]
    assert set(m.model) == {"target", "retrain", "unlearn"}
    assert set(m[m.model != "unlearn"].method) == {""}


def test_phenomenon_direction(run):
    """Forgotten at full precision, knowledge back at 4 bits, 8 bits like full precision."""
    s = json.loads((run / "results/tables/summary.json").read_text())["synth"]
    ret = s["mean_retention_utility_constrained"]
    print("retention:", ret, "target M2 kept:", s["target_m2_relative_to_full_precision"])
    assert ret["fp32"] < 0.5, ret
    assert ret["rtn4"] > ret["fp32"] + 0.25, ret
    assert abs(ret["rtn8"] - ret["fp32"]) < 0.15, ret
    assert s["target_m2_relative_to_full_precision"]["rtn4"] >= 0.9


def test_models_were_memorised_and_meta_written(run):
    meta = json.loads((run / "results/synth/models/trained/target/meta.json").read_text())
    assert meta["history"]["memorised_at_epoch"] is not None
    assert meta["versions"]["torch"].startswith("2.") and meta["inputs"]["data"]["sha256"]
    for d in (run / "results/synth/models").rglob("config.json"):
        assert (d.parent / "meta.json").is_file(), d.parent
        assert list(d.parent.glob("*.safetensors")), d.parent
    ev = json.loads(next((run / "results/synth/eval/target").glob("*.json")).read_text())
    assert ev["items"]["knowmem_f"][0]["output"] is not None and "meta" in ev


def test_rerun_is_deterministic(run):
    """Recompute one unlearned model and everything after it: metrics.csv is byte-identical."""
    before = (run / "results/tables/metrics.csv").read_bytes()
    victim = sorted((run / "results/synth/models/unlearn").glob("*/alpha~*/lr~*"))[0]
    evals = sorted((run / "results/synth/eval" / victim.relative_to(run / "results/synth/models")).glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in [*victim.glob("*.safetensors"), *evals]}
    assert len(stamps) >= 2
    # --forcerun: a deleted intermediate whose consumers are complete would not be recomputed
    run_snakemake(run, "--forcerun", str(victim.relative_to(run)))
    recomputed = [*victim.glob("*.safetensors"), *evals]
    assert all(p.stat().st_mtime_ns != stamps.get(p) for p in recomputed), "nothing was recomputed"
    assert (run / "results/tables/metrics.csv").read_bytes() == before
    # and nothing is left to do
    proc = run_snakemake(run, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def _planned_after(run, tmp_path, mutate) -> dict[str, int]:
    """Jobs a dry run plans on top of the finished CI run after ``mutate``(config)."""
    import re

    import yaml

    cfg = yaml.safe_load(CI_CONFIG.read_text())
    mutate(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-n", "--configfile", str(path),
           "--directory", str(run), "--snakefile", str(ROOT / "Snakefile")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    if "Job stats:" not in out:
        return {}
    table = out.split("Job stats:")[1].split("\n\n")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    jobs.pop("total", None)
    return jobs


AGGREGATES = {"aggregate": 1, "paper": 1, "aggregate_quant": 1, "paper_quant": 1, "all": 1}
_CI = yaml.safe_load(CI_CONFIG.read_text())
S = len(_CI["quantize"]["schemes"])  # schemes
C = len([s for s in _CI["quantize"]["schemes"].values() if s["quantizer"] in ("gptq", "awq")])  # calibrated


@pytest.mark.parametrize("name,mutate,expected", [
    ("nothing", lambda c: None, {}),
    ("alpha of one method", lambda c: c["unlearn"]["methods"]["ga_gdr"].update(alphas=[3]),
     {"unlearn": 1, "quantize": C, "evaluate": S, "analysis": 1, **AGGREGATES}),
    ("epochs of every method", lambda c: c["unlearn"].update(epochs=41),
     {"unlearn": 2, "quantize": 2 * C, "evaluate": 2 * S, "analysis": 2, **AGGREGATES}),
    ("a new scheme", lambda c: c["quantize"]["schemes"].update(rtn3={"quantizer": "rtn", "bits": 3, "group_size": 128}),
     {"evaluate": 4, "analysis": 2, **AGGREGATES}),
    ("a GPTQ setting", lambda c: c["quantize"]["schemes"]["gptq"].update(dampening=0.02),
     {"quantize": 4, "evaluate": 4, "analysis": 2, **AGGREGATES}),
    ("an evaluation setting", lambda c: c["evaluate"].update(mink_k=0.2), {"evaluate": 4 * S, **AGGREGATES}),
    ("a plotting option", lambda c: c["report"].update(figure_dpi=100), AGGREGATES),
    ("the corpus seed", lambda c: c["datasets"]["synth"]["synthetic"].update(seed=1),
     {"prepare_data": 1, "train_base": 2, "release": 2, "unlearn": 2, "quantize": 4 * C, "evaluate": 4 * S,
      "analysis": 2, **AGGREGATES}),
])
def test_config_change_replans_exactly_the_affected_jobs(run, tmp_path, name, mutate, expected):
    assert _planned_after(run, tmp_path, mutate) == expected, name
