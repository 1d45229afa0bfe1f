"""Exact incremental reruns of the DEFAULT config, proven on dry runs (no training).

How a finished default run is faked, honestly and cheaply: a dry run with ``--forceall`` lists every
job of the default DAG with its outputs, log and benchmark; each output is created empty (a
directory where the rule declares ``directory()``, read from the parsed workflow); then
``snakemake --touch --forceall`` "runs" every job in DAG order. Touch mode executes no rule code
but goes through Snakemake's normal job postprocessing, so it orders the mtimes along the DAG and
records each job's metadata (params, input set, code) in .snakemake/metadata exactly as a real run
would. What follows is Snakemake's own replanning (``-n`` with the default ``--rerun-triggers``) on
a changed config; only the file contents are fake, and no planning decision here reads contents.
Expected counts come from the config through the experiment object (``qunlearn.experiment``), not
from constants.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from qunlearn.experiment import Experiment
from qunlearn.paths import SELECTED

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# jobs downstream of every evaluation: tables, figures, paper numbers and copies, the target rule
AGGREGATES = {
    "aggregate": 1,
    "figures": 1,
    "aggregate_quant": 1,
    "paper_numbers": 1,
    "paper_assets": 1,
    "paper_quant": 1,
    "all": 1,
}

_RULE_DIRS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1),
                      config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
                      snakefile=Path(sys.argv[2]), workdir=Path(sys.argv[3]))
    print("RULE_DIRS=" + json.dumps({r.name: [bool(o.is_directory) for o in r.output]
                                     for r in wf._workflow.rules}))
"""


def snakemake(workdir, configfile, *args, check=True):
    cmd = [
        *SNAKEMAKE,
        "--cores",
        "1",
        "--configfile",
        str(configfile),
        "--directory",
        str(workdir),
        "--snakefile",
        str(ROOT / "Snakefile"),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned(workdir, configfile, *args) -> list[tuple[str, dict]]:
    """(rule, {output/log/benchmark: [paths]}) of every job a dry run plans."""
    out = snakemake(workdir, configfile, "-n", *args).stdout
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):$", block, re.M)
        if not m:
            continue
        fields = {
            k: [p.strip() for p in v.split(",")]
            for k, v in re.findall(r"^    (output|log|benchmark): (.+)$", block, re.M)
        }
        jobs.append((m.group(1), fields))
    return jobs


def job_stats(jobs) -> dict[str, int]:
    stats: dict[str, int] = {}
    for rule, _ in jobs:
        stats[rule] = stats.get(rule, 0) + 1
    return stats


def fake_finished_run(workdir: Path, configfile: Path) -> None:
    proc = subprocess.run(
        [*SNAKEMAKE[:1], "-c", _RULE_DIRS, str(configfile), str(ROOT / "Snakefile"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rule_dirs = json.loads(proc.stdout.split("RULE_DIRS=")[1].splitlines()[0])
    jobs = planned(workdir, configfile, "--forceall")
    assert jobs, "the dry run planned no job"
    for rule, fields in jobs:
        flags = rule_dirs[rule]
        outputs = fields.get("output", [])
        assert len(outputs) == len(flags), (rule, outputs, flags)
        for path, is_dir in zip(outputs, flags):
            p = workdir / path
            if is_dir:
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
        for path in fields.get("log", []) + fields.get("benchmark", []):
            (workdir / path).parent.mkdir(parents=True, exist_ok=True)
            (workdir / path).touch()
    snakemake(workdir, configfile, "--touch", "--forceall")


@pytest.fixture(scope="module")
def finished_default(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fake_default")
    configfile = workdir / "config.yaml"
    configfile.write_text((ROOT / "config.yaml").read_text())
    fake_finished_run(workdir, configfile)
    return workdir


def replan(workdir, tmp_path, mutate):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    mutate(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return cfg, planned(workdir, path)


def default_cfg():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def outputs(jobs, rule) -> set[str]:
    return {p for r, f in jobs if r == rule for p in f["output"]}


def unlearn_dir(ds, mid):
    return f"results/{ds}/models/{mid}"


def selections_with_grid(cfg):
    """(dataset, method) of every selection that reads grid evaluations (the others read nothing)."""
    exp = Experiment(cfg)
    return {
        (ds, m)
        for ds in cfg["datasets"]
        for m in cfg["unlearn"]["methods"]
        if exp.selection_source(ds, m) == (ds, m) and exp.grid_alphas(m)
    }


def expected(old, new, redo_selections=(), reevaluate=False):
    """The jobs a change must plan, from the two configs' experiments: arms whose path is new,
    the selections that must be redone (grid or alphas changed, or named) and every arm that reads
    one of them, and the evaluations of those arms (of every model when ``reevaluate``)."""
    old_exp, new_exp = Experiment(old), Experiment(new)
    old_ids = {(a.dataset, a.model_id) for a in old_exp.unlearn_jobs()}
    sel = set(redo_selections)
    for ds, m in selections_with_grid(new) | {
        (d, m) for d in new["datasets"] for m in new["unlearn"]["methods"] if new_exp.selection_source(d, m) == (d, m)
    }:
        if (
            m not in old["unlearn"]["methods"]
            or old_exp.grid_arms(ds, m) != new_exp.grid_arms(ds, m)
            or old_exp.alphas(m) != new_exp.alphas(m)
        ):
            sel.add((ds, m))
    arms = {
        (a.dataset, a.model_id)
        for a in new_exp.unlearn_jobs()
        if (a.dataset, a.model_id) not in old_ids
        or (a.alpha == SELECTED and new_exp.selection_source(a.dataset, a.method) in sel)
    }
    # an attack on a remade model is made again (and evaluated): its parent changed
    attacked = new_exp.attacks_on(arms)
    evals = {(ds, mid, s) for ds, mid, s in new_exp.evaluations if reevaluate or (ds, mid) in arms | attacked}
    eval_files = {f"results/{ds}/eval/{mid}/{s}.json" for ds, mid, s in evals}
    return {
        "_attack_tables": reads_attack_tables(new_exp, eval_files),
        "attack": {unlearn_dir(*a) for a in attacked},
        "unlearn": {unlearn_dir(*a) for a in arms},
        "evaluate": {f"results/{ds}/eval/{mid}/{s}.json" for ds, mid, s in evals},
        "select_alpha": {f"results/{ds}/selection/{m}.json" for ds, m in sel},
        # GPTQ/AWQ checkpoints and weight analyses follow the (re)made models
        "quantize": {
            f"results/{ds}/quant/{mid}/{s}"
            for ds, mid, s in evals
            if (ds, mid) in arms | attacked and new_exp.schemes[s].calibrated
        },
        "analysis": {f"results/{ds}/analysis/{mid}" for ds, mid in arms if mid in new_exp.analysis_model_ids(ds)},
    }


ATTACK_TABLES = {"aggregate_attacks": 1, "paper_attacks": 1}


def assert_plans(jobs, want):
    """``want``: rule -> its planned outputs; the report rules must be the aggregates (with the
    attack tables when an evaluation they read is planned)."""
    attack_tables = want.pop("_attack_tables")
    for rule, files in want.items():
        assert outputs(jobs, rule) == files, rule
    stats = job_stats(jobs)
    assert {r: n for r, n in stats.items() if r not in want} == AGGREGATES | (ATTACK_TABLES if attack_tables else {}), (
        stats
    )


def reads_attack_tables(exp, eval_files: set[str]) -> bool:
    return bool(eval_files & set(exp.attack_report_evals()))


def test_fake_run_is_complete_and_unchanged(finished_default):
    """The baseline: the touched default run plans nothing, and its metadata exists for every job."""
    jobs = planned(finished_default, finished_default / "config.yaml")
    assert jobs == []
    assert len(list((finished_default / ".snakemake" / "metadata").iterdir())) > 60


def test_alpha_grid_of_one_method_replans_its_grid_selection_and_readers(finished_default, tmp_path):
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["unlearn"]["methods"]["ga_gdr"].update(alphas=[1, 2, 3]))
    want = expected(default_cfg(), cfg)
    assert want["select_alpha"] == {"results/synth/selection/ga_gdr.json"}
    assert_plans(jobs, want)
    # only GA_GDR and its SURE variant (which takes GA_GDR's alpha) are touched
    assert all(re.search(r"/unlearn/ga_gdr(_sure)?/", p) for p in want["unlearn"] | want["evaluate"])


def test_lr_of_one_method_replans_only_its_branch(finished_default, tmp_path):
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["unlearn"]["methods"]["npo_klr"].update(lr=1e-5))
    want = expected(default_cfg(), cfg)
    assert want["unlearn"] and all(re.search(r"/unlearn/npo_klr(_sure)?/", p) for p in want["unlearn"])
    assert_plans(jobs, want)


def test_npo_beta_replans_only_the_npo_family(finished_default, tmp_path):
    """A method's own setting is part of exactly its jobs' params: NPO's beta on npo_gdr replans
    npo_gdr's arms (and what reads its selection), no GA arm and no other NPO method."""
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["unlearn"]["methods"]["npo_gdr"].update(beta=0.2))
    assert all(re.search(r"/unlearn/npo_gdr(_sure)?/", p) for p in outputs(jobs, "unlearn")), outputs(jobs, "unlearn")
    # the grid arms of npo_gdr are remade, so its selection is redone and the arms reading it follow
    assert_plans(jobs, _beta_expected(cfg))


def _beta_expected(new):
    """Arms of npo_gdr (changed params), its selection (its grid was remade), the arms reading the
    selection (npo_gdr's SURE variant), and their evaluations/quantize/analysis jobs."""
    exp = Experiment(new)
    touched = {
        (a.dataset, a.model_id)
        for a in exp.unlearn_jobs()
        if a.method == "npo_gdr"
        or (a.alpha == SELECTED and exp.selection_source(a.dataset, a.method) == ("synth", "npo_gdr"))
    }
    attacked = exp.attacks_on(touched)
    evals = {(ds, mid, s) for ds, mid, s in exp.evaluations if (ds, mid) in touched | attacked}
    eval_files = {f"results/{ds}/eval/{mid}/{s}.json" for ds, mid, s in evals}
    return {
        "_attack_tables": reads_attack_tables(exp, eval_files),
        "attack": {unlearn_dir(*a) for a in attacked},
        "unlearn": {unlearn_dir(*a) for a in touched},
        "evaluate": {f"results/{ds}/eval/{mid}/{s}.json" for ds, mid, s in evals},
        "select_alpha": {"results/synth/selection/npo_gdr.json"},
        "quantize": {f"results/{ds}/quant/{mid}/{s}" for ds, mid, s in evals if exp.schemes[s].calibrated},
        "analysis": {f"results/{ds}/analysis/{mid}" for ds, mid in touched if mid in exp.analysis_model_ids(ds)},
    }


def test_a_new_scheme_adds_only_its_evaluations(finished_default, tmp_path):
    cfg, jobs = replan(
        finished_default,
        tmp_path,
        lambda c: c["quantize"]["schemes"].update(rtn4_g32={"quantizer": "rtn", "bits": 4, "group_size": 32}),
    )
    assert "rtn4_g32" not in default_cfg()["quantize"]["schemes"]
    exp = Experiment(cfg)
    want = {f"results/{ds}/eval/{mid}/{s}.json" for ds, mid, s in exp.evaluations if s == "rtn4_g32"}
    # each headline arm's weight analysis covers every scheme it is evaluated at (a method's
    # `schemes` may leave the new one out: the default's SURE arms)
    analyses = {
        f"results/{ds}/analysis/{mid}"
        for ds in cfg["datasets"]
        for mid in exp.analysis_model_ids(ds)
        if "rtn4_g32" in exp.model_schemes(ds, mid)
    }
    assert analyses != {
        f"results/{ds}/analysis/{mid}" for ds in cfg["datasets"] for mid in exp.analysis_model_ids(ds)
    }  # the SURE arms' are not replanned
    assert_plans(jobs, {"evaluate": want, "analysis": analyses, "_attack_tables": reads_attack_tables(exp, want)})


@pytest.fixture(scope="module")
def finished_without_a_method(tmp_path_factory):
    """A finished default run without npo_gdr_sure (a method of the default, then added back)."""
    workdir = tmp_path_factory.mktemp("fake_default_minus")
    cfg = default_cfg()
    del cfg["unlearn"]["methods"]["npo_gdr_sure"]
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    fake_finished_run(workdir, workdir / "config.yaml")
    return workdir, cfg


def test_a_new_method_adds_only_its_branch(finished_without_a_method, tmp_path):
    workdir, old = finished_without_a_method
    new = default_cfg()
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(new))
    jobs = planned(workdir, path)
    want = expected(old, new)
    assert want["unlearn"] and all("/unlearn/npo_gdr_sure/" in p for p in want["unlearn"] | want["evaluate"])
    assert_plans(jobs, want)


def _everything(cfg):
    exp = Experiment(cfg)
    evals = exp.evaluations
    return {
        "release": 2 * len(cfg["datasets"]),
        "select_alpha": len(selections_with_grid(cfg)),
        "unlearn": len(exp.unlearn_jobs()),
        "evaluate": len(evals),
        "quantize": sum(1 for _, _, s in evals if exp.schemes[s].calibrated),
        "analysis": sum(len(exp.analysis_model_ids(ds)) for ds in cfg["datasets"]),
        "attack": len(exp.attack_jobs()),
        **AGGREGATES,
        **ATTACK_TABLES,
    }


def test_the_corpus_seed_replans_everything_downstream_of_data_prep(finished_default, tmp_path):
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["datasets"]["synth"]["synthetic"].update(seed=1))
    owned = Experiment(cfg).owned_datasets()
    assert job_stats(jobs) == {"prepare_data": len(owned), "train_base": 2 * len(owned), **_everything(cfg)}


def test_the_model_size_replans_training_and_everything_after(finished_default, tmp_path):
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["model"].update(hidden_size=256))
    assert job_stats(jobs) == {"train_base": 2 * len(Experiment(cfg).owned_datasets()), **_everything(cfg)}


def test_unlearning_epochs_replan_unlearning_but_no_training(finished_default, tmp_path):
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["unlearn"].update(epochs=41))
    assert_plans(jobs, expected(default_cfg(), cfg))
    assert "train_base" not in job_stats(jobs)


def test_an_evaluation_setting_replans_evaluations_and_what_reads_a_selection(finished_default, tmp_path):
    """Every evaluation; a selection reads grid evaluations, so it is redone, and the arms that read
    it are unlearned again (Snakemake cannot know the selection came out the same)."""
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["evaluate"].update(mink_k=0.2))
    assert_plans(jobs, expected(default_cfg(), cfg, redo_selections=selections_with_grid(cfg), reevaluate=True))


def test_a_plotting_option_reruns_only_the_figures(finished_default, tmp_path):
    _, jobs = replan(finished_default, tmp_path, lambda c: c["report"].update(figure_dpi=100))
    # aggregate_quant draws its own figures (and writes its tables again, unchanged)
    assert job_stats(jobs) == {"figures": 1, "paper_assets": 1, "aggregate_quant": 1, "paper_quant": 1, "all": 1}


def test_a_table_option_reruns_the_aggregates_only(finished_default, tmp_path):
    _, jobs = replan(finished_default, tmp_path, lambda c: c["report"].update(utility_constrained=["ga_gdr"]))
    # the attacked methods default to the utility-constrained ones: the attack tables lose rows
    # (the remaining attack jobs are the ones already made)
    assert job_stats(jobs) == AGGREGATES | ATTACK_TABLES


def test_the_scale_keys_at_their_defaults_replan_nothing(finished_default, tmp_path):
    """unlearn.micro_batch_size/processes/autocast and train.micro_batch_size written out at their
    defaults leave every finished job as it is (they enter params only when set)."""

    def mutate(c):
        c["unlearn"].update(micro_batch_size=None, processes=1, autocast=None)
        c["train"].update(micro_batch_size=None)

    _, jobs = replan(finished_default, tmp_path, mutate)
    assert jobs == []


def test_gradient_accumulation_replans_unlearning_but_no_training(finished_default, tmp_path):
    """Set, the key enters every unlearn job's params (same paths): each reruns, training does not."""
    cfg, jobs = replan(finished_default, tmp_path, lambda c: c["unlearn"].update(micro_batch_size=8))
    stats = job_stats(jobs)
    assert stats["unlearn"] == len(Experiment(cfg).unlearn_jobs())
    assert not {"prepare_data", "train_base", "release"} & set(stats), stats
