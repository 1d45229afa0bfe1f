"""One real run of the CI-sized config through Snakemake: the phenomenon's direction, the tables and
figures, determinism and meta.json. Minutes on 2 cores; the run is shared by the tests below."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from conftest import CI_CONFIG, ROOT, run_snakemake

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(ci_run):
    return ci_run


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
    assert list(m.columns) == [
        "dataset",
        "model_id",
        "model",
        "method",
        "alpha",
        "selected",
        "lr",
        "epochs",
        "loss",
        "headline",
        "scheme",
        "metric",
        "value",
    ]
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


def test_selected_arm_is_the_grid_arm_it_selected(run, tmp_path):
    """The selection picked one alpha of the grid; the selected arm is a copy of that grid arm, and
    training it afresh from the selection gives the same bytes (so the copy is what it stands for);
    the tables report the arm with that alpha."""
    from qunlearn.stages import unlearn_model

    sel = json.loads((run / "results/synth/selection/ga_gdr.json").read_text())
    assert sel["alpha"] in {g["alpha"] for g in sel["grid"]} and len(sel["grid"]) == 2
    arms = run / "results/synth/models/unlearn/ga_gdr"
    chosen = arms / f"alpha~{sel['alpha']:g}/lr~3e-05/epochs~40/loss~faithful"
    selected = arms / "alpha~selected/lr~3e-05/epochs~40/loss~faithful"
    meta = json.loads((selected / "meta.json").read_text())
    assert meta["copied_from"].endswith(str(chosen.relative_to(run))) and meta["config"]["alpha"] == sel["alpha"]
    cfg = {k: v for k, v in meta["config"].items() if k != "alpha"}
    unlearn_model(
        run / "results/synth/models/target",
        run / "results/synth/data",
        tmp_path / "fresh",
        cfg,
        max_length=256,
        seed=0,
        threads=1,
        progress=False,
        selection_json=run / "results/synth/selection/ga_gdr.json",
    )
    assert (tmp_path / "fresh/model.safetensors").read_bytes() == (selected / "model.safetensors").read_bytes()
    ret = pd.read_csv(run / "results/tables/retention.csv", keep_default_na=False)
    head = ret[(ret.method == "ga_gdr") & (ret.selected.astype(str) == "True")]
    assert set(head.alpha.astype(float)) == {sel["alpha"]}
    assert "ga_gdr_sure" in set(ret.method)  # SURE rows like any other method
    for stem in ("table3_sure", "table4_alpha_grid", "lr_sweep", "epochs_ablation", "loss_variants"):
        table = pd.read_csv(run / f"results/tables/{stem}.csv")
        assert len(table) >= 2 and (run / f"paper/tables/{stem}.tex").stat().st_size > 0, stem
    grid = pd.read_csv(run / "results/tables/table4_alpha_grid.csv", keep_default_na=False)
    assert list(grid.selected).count("*") == 1


def test_rerun_is_deterministic(run):
    """Recompute one unlearned model and everything after it: metrics.csv is byte-identical."""
    before = (run / "results/tables/metrics.csv").read_bytes()
    # an arm with nothing downstream but its evaluations (a grid arm would also redo the selection)
    victim = next((run / "results/synth/models/unlearn").glob("*/alpha~*/lr~*/epochs~*/loss~paper_code"))
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
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "2",
        "-n",
        "--configfile",
        str(path),
        "--directory",
        str(run),
        "--snakefile",
        str(ROOT / "Snakefile"),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    if "Job stats:" not in out:
        return {}
    table = out.split("Job stats:")[1].split("\n\n")[0]
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    jobs.pop("total", None)
    return jobs


AGGREGATES = {
    "aggregate": 1,
    "figures": 1,
    "paper_numbers": 1,
    "paper_assets": 1,
    "aggregate_quant": 1,
    "paper_quant": 1,
    "all": 1,
}
ATTACK_TABLES = {"aggregate_attacks": 1, "paper_attacks": 1}
_CI = yaml.safe_load(CI_CONFIG.read_text())
# attacks: one point of each attack on npo_gdr's headline arm (A jobs) and on the retrain model,
# each evaluated at the attack schemes
A = len(_CI["attacks"]["runs"])
AS = len(_CI["attacks"]["schemes"])
S = len(_CI["quantize"]["schemes"])  # schemes (bases and headline arms are evaluated at all of them)
C = len([s for s in _CI["quantize"]["schemes"].values() if s["quantizer"] in ("gptq", "awq")])  # calibrated


# configs/ci.yaml: ga_gdr grid {2, 5} (evaluated at fp32), npo_gdr one alpha, ga_gdr_sure (alpha from
# ga_gdr), 3 schemes; sweeps: ga_gdr lr 3e-4, npo_gdr 1 epoch, npo_gdr paper_code (each at fp32, rtn4).
# Arms whose alpha is "selected" read ga_gdr's selection: ga_gdr, ga_gdr_sure and the lr-sweep arm.
# seeds: ga_gdr's and npo_gdr's headline arms again with seed 1 (unlearn_seeded; every scheme,
# GPTQ/AWQ checkpoints, weight analysis), each reading its method's selection.
# seeds: ga_gdr's and npo_gdr's headline arms again with seed 1 (unlearn_seeded; every scheme,
# GPTQ/AWQ checkpoints, weight analysis), reading their method's selection.
@pytest.mark.parametrize(
    "name,mutate,expected",
    [
        ("nothing", lambda c: None, {}),
        (
            "the alpha grid of one method",
            lambda c: c["unlearn"]["methods"]["ga_gdr"].update(alphas=[2, 3]),
            # the new grid arm (fp32), the selection, and the four arms that read it: the headline GA_GDR,
            # its seed-1 replicate and GA_GDR_SURE (every scheme, GPTQ/AWQ checkpoints, weight
            # analysis) and the lr-sweep arm
            {
                "unlearn": 1 + 3,
                "unlearn_seeded": 1,
                "evaluate": 1 + 3 * S + 2,
                "quantize": 3 * C,
                "analysis": 3,
                "select_alpha": 1,
                **AGGREGATES,
            },
        ),
        (
            "the alpha of a single-alpha method",
            lambda c: c["unlearn"]["methods"]["npo_gdr"].update(alphas=[2]),
            # npo_gdr's headline arm and its replicate, its epochs and loss-variant arms, and the
            # attacks on its headline arm
            {
                "select_alpha": 1,
                "unlearn": 3,
                "unlearn_seeded": 1,
                "attack": A,
                "evaluate": 2 * S + 2 + 2 + A * AS,
                "quantize": 2 * C,
                "analysis": 2,
                **AGGREGATES,
                **ATTACK_TABLES,
            },
        ),
        (
            "the lr of one method",
            lambda c: c["unlearn"]["methods"]["npo_gdr"].update(lr=1e-4),
            {
                "unlearn": 3,
                "unlearn_seeded": 1,
                "attack": A,
                "evaluate": 2 * S + 2 + 2 + A * AS,
                "quantize": 2 * C,
                "analysis": 2,
                **AGGREGATES,
                **ATTACK_TABLES,
            },
        ),
        (
            "a sweep value",
            lambda c: c["sweeps"]["lr"].update(lrs=[3e-4, 1e-4]),
            {"unlearn": 1, "evaluate": 2, **AGGREGATES},
        ),
        (
            "epochs of every method",
            lambda c: c["unlearn"].update(epochs=41),
            # every arm but the 1-epoch one; the grid's new evaluations redo ga_gdr's selection
            {
                "unlearn": 7,
                "unlearn_seeded": 2,
                "attack": A,
                "evaluate": 2 + 5 * S + 2 + 2 + A * AS,
                "quantize": 5 * C,
                "analysis": 5,
                "select_alpha": 1,
                **AGGREGATES,
                **ATTACK_TABLES,
            },
        ),
        (
            "a new scheme",
            lambda c: c["quantize"]["schemes"].update(rtn3={"quantizer": "rtn", "bits": 3, "group_size": 128}),
            # bases, headline arms and replicates; each one's weight analysis covers every scheme
            {"evaluate": 2 + 3 + 2, "analysis": 5, **AGGREGATES},
        ),
        (
            "a GPTQ setting",
            lambda c: c["quantize"]["schemes"]["gptq"].update(dampening=0.02),
            # npo_gdr's and the target's GPTQ evaluations are robust retention's (a 4-bit scheme)
            {"quantize": 7, "evaluate": 7, "analysis": 5, **AGGREGATES, **ATTACK_TABLES},
        ),
        # every evaluation; the remade grid evaluations redo ga_gdr's selection and so the arms reading it
        (
            "an evaluation setting",
            lambda c: c["evaluate"].update(mink_k=0.2),
            {
                "evaluate": 7 * S + 8 + 2 * A * AS,
                "select_alpha": 1,
                "unlearn": 3,
                "unlearn_seeded": 1,
                "quantize": 3 * C,
                "analysis": 3,
                **AGGREGATES,
                **ATTACK_TABLES,
            },
        ),
        # aggregate_quant draws its figures itself, so it reruns too (its tables come out unchanged)
        (
            "a plotting option",
            lambda c: c["report"].update(figure_dpi=100),
            {"figures": 1, "paper_assets": 1, "aggregate_quant": 1, "paper_quant": 1, "all": 1},
        ),
        (
            "the corpus seed",
            lambda c: c["datasets"]["synth"]["synthetic"].update(seed=1),
            # npo_gdr's single-alpha selection reads no data: it stays
            {
                "prepare_data": 1,
                "train_base": 2,
                "release": 2,
                "select_alpha": 1,
                "unlearn": 8,
                "unlearn_seeded": 2,
                "attack": 2 * A,
                "evaluate": 7 * S + 8 + 2 * A * AS,
                "quantize": 7 * C,
                "analysis": 5,
                **AGGREGATES,
                **ATTACK_TABLES,
            },
        ),
    ],
)
def test_config_change_replans_exactly_the_affected_jobs(run, tmp_path, name, mutate, expected):
    assert _planned_after(run, tmp_path, mutate) == expected, name
