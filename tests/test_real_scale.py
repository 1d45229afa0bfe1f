"""Real-scale planning without a GPU: the MUSE configs validate and plan the paper grid, published
bases replace training in the DAG, GPU rules carry resources sized by the model, the memory
options of unlearning work."""

import copy
import re

import pytest
import torch
import yaml
from conftest import ROOT
from test_workflow import planned_jobs, snakemake

from qunlearn import resources
from qunlearn.config import ModelConfig
from qunlearn.experiment import Experiment
from qunlearn.paths import BASES
from qunlearn.registries import METHODS

MUSE_CONFIGS = ["configs/muse-news.yaml", "configs/muse-books.yaml"]


def load(path):
    with open(ROOT / path) as fh:
        return yaml.safe_load(fh)


def expected_jobs(cfg: dict) -> dict:
    """Job counts per rule, from the config alone: per method its alpha grid (two or more alphas,
    evaluated at the selection's schemes) and its headline arm (every scheme); GPTQ/AWQ checkpoints
    for every model evaluated with them; one weight analysis per headline arm (no sweeps here)."""
    assert not cfg.get("sweeps") and not cfg.get("seeds")
    exp = Experiment(cfg)
    owned = exp.owned_datasets()
    fetched = sum(1 for d in owned for b in BASES if exp.pretrained_base(d, b))
    trained = len(owned) * len(BASES) - fetched
    schemes = cfg["quantize"]["schemes"]
    calibrated = [s for s, v in schemes.items() if v["quantizer"] in ("gptq", "awq")]
    n_sel_schemes = len(cfg["unlearn"]["alpha_selection"]["schemes"])
    methods = {d: exp.dataset_methods(d) for d in cfg["datasets"]}
    alphas = {m: v.get("alphas") or [] for m, v in cfg["unlearn"]["methods"].items()}  # none: SURE, objective's
    n_grid = sum(len(alphas[m]) for d in owned for m in methods[d] if len(alphas[m]) > 1)
    n_head = sum(len(ms) for ms in methods.values())
    n_models = len(BASES) * len(cfg["datasets"]) + n_head
    jobs = {
        "prepare_data": len(owned),
        "fetch_model": fetched,
        "train_base": trained,
        "release": len(BASES) * len(cfg["datasets"]),
        "select_alpha": sum(1 for d in owned for m in methods[d] if alphas[m]),
        "unlearn": n_grid + n_head,
        "quantize": n_models * len(calibrated),
        "evaluate": n_models * len(schemes) + n_grid * n_sel_schemes,
        "analysis": n_head,
        "aggregate": 1,
        "figures": 1,
        "aggregate_quant": 1,
        "aggregate_attacks": 1,  # always planned (no rows without attacks)
        "paper_attacks": 1,
        "paper_numbers": 1,
        "paper_includes": 1,
        "paper_assets": 1,
        "paper_quant": 1,
        "all": 1,
    }
    jobs = {k: v for k, v in jobs.items() if v}
    jobs["total"] = sum(jobs.values())
    return jobs


def jobs_per_table(cfg: dict) -> dict[str, dict[str, int]]:
    """The unlearn/select_alpha/evaluate/quantize/analysis jobs each paper table needs, counted from
    the config's values by hand (one dataset, published bases; not with the planner): Table 1 (the
    bases and the plain methods' headline arms at every uncalibrated scheme), the GPTQ/AWQ tables
    (the same models quantized and evaluated with the calibrated schemes), the SURE table (the SURE
    headline arms at their schemes), the alpha table (each grid at the selection's schemes), the lr
    sweep and the epochs ablation (their extra arms at their schemes), the weight-change table (one
    analysis per headline arm) and the RMU table (the headline arms of the RMU family, at every
    scheme, counted from the config's methods)."""
    (ds,) = cfg["datasets"]
    u, sweeps, schemes = cfg["unlearn"], cfg.get("sweeps") or {}, cfg["quantize"]["schemes"]
    methods = u["methods"]
    sure = [m for m in methods if m.endswith("_sure")]
    rmu = [m for m in methods if METHODS[m].family == "rmu"]
    plain = [m for m in methods if m not in sure and m not in rmu]
    cal = [s for s, v in schemes.items() if v["quantizer"] in ("gptq", "awq")]
    uncal = [s for s in schemes if s not in cal]
    lr_of = lambda m: float(methods[m].get("lr", u["lr"]))  # noqa: E731
    n_grid = sum(len(methods[m]["alphas"]) for m in plain if len(methods[m]["alphas"]) > 1)
    lr, ep = sweeps.get("lr"), sweeps.get("epochs")
    lr_extra = sum(len({float(v) for v in lr["lrs"]} - {lr_of(m)}) for m in lr["methods"]) if lr else 0
    ep_extra = len(ep["methods"]) * len(set(ep["epochs"]) - {u["epochs"]}) if ep else 0
    models = 2 + len(plain)
    # the recovery tables: every point of every attack on the utility-constrained headline arms and
    # the controls (both bases; interpolation the retrain model only), at the attack schemes
    atk = cfg.get("attacks") or {"runs": {}, "schemes": []}
    n_points = {
        "relearn": lambda a: len(a["steps"]),
        "prune": lambda a: len(a["criteria"]) * len(a["sparsities"]),
        "noise": lambda a: len(a["c"]),
        "interpolate": lambda a: len(a["lambdas"]),
    }
    n_controls = {"interpolate": 1}
    n_attack = sum(
        n_points[a](v) * (len(cfg["report"]["utility_constrained"]) + n_controls.get(a, 2))
        for a, v in atk["runs"].items()
    )
    return {
        "recovery": {"attack": n_attack, "evaluate": n_attack * len(atk["schemes"])},
        "table1": {"unlearn": len(plain), "evaluate": models * len(uncal)},
        "table2_3_gptq_awq": {"quantize": models * len(cal), "evaluate": models * len(cal)},
        "table3_sure": {"unlearn": len(sure), "evaluate": sum(len(methods[m]["schemes"]) for m in sure)},
        "table4_alpha_grid": {
            "select_alpha": len(plain),  # every plain method has alphas; SURE takes its objective's
            "unlearn": n_grid,
            "evaluate": n_grid * len(u["alpha_selection"]["schemes"]),
        },
        "lr_sweep": {"unlearn": lr_extra, "evaluate": lr_extra * len(lr["schemes"]) if lr else 0},
        "epochs_ablation": {"unlearn": ep_extra, "evaluate": ep_extra * len(ep["schemes"]) if ep else 0},
        "weight_change": {"analysis": len(methods)},
        "rmu": {
            "select_alpha": len(rmu),
            "unlearn": len(rmu),
            "quantize": len(rmu) * len(cal),
            "evaluate": len(rmu) * len(schemes),
        },
    }


PAPER_TABLES = {  # the studies each MUSE config must plan (their extra unlearn jobs), from the paper
    "configs/muse-news.yaml": {"table3_sure": 4, "table4_alpha_grid": 20, "lr_sweep": 16, "epochs_ablation": 4},
    "configs/muse-books.yaml": {"table3_sure": 4, "table4_alpha_grid": 20, "lr_sweep": 16, "epochs_ablation": 8},
}


@pytest.mark.parametrize("path", MUSE_CONFIGS)
def test_muse_config_plans_every_paper_table(path):
    """`snakemake --configfile <muse config> paper` plans every table of the paper and the rebuttal:
    the per-table counts add up to the planned jobs of each rule, each study is non-empty, and
    every declared table is an output."""
    cfg = load(path)
    Experiment(cfg)  # validates
    per_table = jobs_per_table(cfg)
    for table, n in PAPER_TABLES[path].items():
        assert per_table[table]["unlearn"] == n, table
    jobs = planned_jobs("paper", "--configfile", path)
    for rule in ("unlearn", "select_alpha", "evaluate", "quantize", "analysis", "attack"):
        assert jobs.get(rule, 0) == sum(t.get(rule, 0) for t in per_table.values()), rule
    assert "train_base" not in jobs and jobs["fetch_model"] == 2  # both bases from the hub
    assert jobs["paper"] == 1 and jobs["aggregate"] == 1 and jobs["aggregate_quant"] == 1
    out = snakemake("-n", "--forceall", "paper", "--configfile", path).stdout
    for stem in per_table:
        assert f"results/tables/{stem}.csv" in out and f"paper/tables/{stem}.tex" in out, stem
    for bits in ("rtn8", "rtn4", "bnb_int8", "bnb_fp4", "gptq", "awq"):  # Table 1 and Tables 2/3
        assert f"/eval/target/{bits}.json" in out and f"/eval/retrain/{bits}.json" in out


def test_the_muse_configs_have_the_papers_sure_variants():
    for path in MUSE_CONFIGS:
        methods = load(path)["unlearn"]["methods"]
        sure = {m: v for m, v in methods.items() if m.endswith("_sure")}
        assert set(sure) == {"ga_gdr_sure", "ga_klr_sure", "npo_gdr_sure", "npo_klr_sure"}
        assert all(v["percentile"] == 90 and v["lr"] > load(path)["unlearn"]["lr"] for v in sure.values())
        # the rebuttal's RMU row at the source's settings for 32-layer models
        assert methods["rmu"] == {"alphas": [100], "lr": 5e-5, "layer": 7, "steering_coeff": 20}


def test_paper_settings_in_the_muse_configs():
    news, books = load(MUSE_CONFIGS[0]), load(MUSE_CONFIGS[1])
    assert news["unlearn"]["epochs"] == 10 and books["unlearn"]["epochs"] == 5
    for cfg in (news, books):
        u = cfg["unlearn"]
        assert u["lr"] == 1e-5 and u["optimizer"] == "adamw"
        assert all(u["methods"][m]["beta"] == 0.1 for m in ("npo", "npo_gdr", "npo_klr"))
        assert cfg["model"]["max_length"] == 2048
        (ds,) = cfg["datasets"].values()
        assert ds["pretrained"]["dtype"] == "bfloat16" and ds["pretrained"]["trust_remote_code"] is False
        for m in ("ga_gdr", "ga_klr", "npo_gdr", "npo_klr"):
            assert u["methods"][m]["alphas"] == [2, 5, 10, 100, 300]


def test_one_published_base_drops_only_its_training(tmp_path):
    cfg = load("configs/ci.yaml")
    del cfg["sweeps"], cfg["seeds"]  # expected_jobs counts grids and headline arms at one seed
    del cfg["attacks"]  # (counted in test_attack_plan.py)
    cfg["datasets"]["synth"]["pretrained"] = {"target": {"path": "/models/target"}, "n_params": 1.0e6}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs("--configfile", str(path))
    assert jobs == expected_jobs(cfg)
    assert jobs["train_base"] == 1 and jobs["fetch_model"] == 1
    out = snakemake("-n", "--forceall", "--configfile", str(path)).stdout
    assert "output: results/synth/models/pretrained/target" in out
    assert "output: results/synth/models/trained/retrain" in out
    assert "results/synth/models/trained/target" not in out


def test_gpu_rules_declare_resources():
    """(That the cheap rules are local rules, i.e. never submitted, is checked on a real SLURM run
    in tests/test_slurm.py.)"""
    out = snakemake("-n", "--forceall", "--configfile", MUSE_CONFIGS[0]).stdout
    blocks = re.findall(r"^(localrule|rule) (\w+):\n(.*?)(?=^\[|\Z)", out, re.M | re.S)
    assert {name for _, name, _ in blocks} >= {"unlearn", "evaluate"}
    for _kind, name, body in blocks:
        if name in ("unlearn", "evaluate"):
            res = re.search(r"resources: (.*)", body).group(1)
            assert re.search(r"\bgpu=[12]\b", res) and re.search(r"\bmem_mb=\d+", res), (name, res)
            assert re.search(r"\bruntime=\d+", res), (name, res)


def test_resources_scale_with_the_model():
    news, books, ci = (Experiment(load(p)) for p in (*MUSE_CONFIGS, "configs/ci.yaml"))
    tiny = resources.rule_resources(ci, "unlearn", "synth", "ga_gdr")
    big = resources.rule_resources(news, "unlearn", "news", "ga_gdr")
    assert tiny == {"gpu": 1, "nodes": 1, "mem_mb": 3000, "runtime": 30}
    assert big["mem_mb"] > 2 * 13_480 and big["runtime"] > tiny["runtime"]  # host: >= 2 copies of 7B bf16
    # NPO/KL need the frozen reference, configured on a second GPU
    assert resources.rule_resources(news, "unlearn", "news", "npo_gdr")["gpu"] == 2
    assert resources.rule_resources(news, "unlearn", "news", "ga_klr")["gpu"] == 2
    # 10 epochs (NEWS) take longer than 5 (BOOKS); evaluation does not depend on epochs
    assert big["runtime"] > resources.rule_resources(books, "unlearn", "books", "ga_gdr")["runtime"]
    assert resources.rule_resources(news, "evaluate", "news") == resources.rule_resources(books, "evaluate", "books")
    slow = copy.deepcopy(news.config)
    slow["compute"]["runtime_scale"] = 2.0
    slow = Experiment(slow)
    assert resources.rule_resources(slow, "unlearn", "news", "ga")["runtime"] >= 2 * big["runtime"] - 1
    with pytest.raises(ValueError, match="not a GPU rule"):
        resources.rule_resources(news, "aggregate", "news")


def test_memory_plan_of_a_7b_model():
    n = 6.74e9
    p = resources.memory_plan(n, 2, "adamw", reference=True, reference_device="same", activations_gb=0)
    assert p["weights"] == pytest.approx(13.48) and p["optimizer"] == pytest.approx(26.96)
    assert p["main_device"] == pytest.approx(4 * 13.48 + 13.48)  # weights, grads, 2 moments, reference
    moved = resources.memory_plan(n, 2, "adamw", reference=True, reference_device="cuda:1", activations_gb=0)
    assert moved["main_device"] == pytest.approx(4 * 13.48) and moved["reference_device"] == pytest.approx(13.48)
    small = resources.memory_plan(n, 2, "adamw_8bit", reference=True, reference_device="same", activations_gb=0)
    assert small["optimizer"] == pytest.approx(13.48) and small["main_device"] < p["main_device"]
    cpu = resources.memory_plan(n, 2, "adafactor", reference=True, reference_device="cpu", activations_gb=0)
    assert cpu["main_device"] < 3 * 13.48 and cpu["host_ram"] >= 2 * 13.48


class _Tok:
    def __init__(self, n):
        self.n, self.bos_token_id, self.eos_token_id, self.pad_token_id = n, 1, 2, 0

    def __len__(self):
        return self.n


@pytest.mark.parametrize("tie", [False, True])
def test_parameter_count_matches_the_built_model(tie):
    from qunlearn.models import build_tiny_llama, count_parameters

    model_cfg = {**load("config.yaml")["model"], "tie_word_embeddings": tie}
    model = build_tiny_llama(ModelConfig(**model_cfg), _Tok(1081), seed=0)
    assert resources.tiny_llama_params(model_cfg, 1081) == count_parameters(model)


def _tiny_model():
    from qunlearn.models import build_tiny_llama

    return build_tiny_llama(
        ModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_length=32), _Tok(50), seed=0
    )


@pytest.mark.parametrize("name", ["adamw", "adamw_8bit", "adafactor"])
def test_each_optimizer_takes_a_step(name):
    from qunlearn.memory import make_optimizer

    model = _tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = make_optimizer(model.parameters(), name, lr=1e-2, weight_decay=0.0)
    ids = torch.randint(3, 50, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_offloaded_reference_gives_the_same_logits_and_is_frozen():
    from qunlearn.memory import OffloadedReference, frozen_reference

    model = _tiny_model().eval()
    ids = torch.randint(3, 50, (2, 8))
    ref = OffloadedReference(frozen_reference(model, "cpu"), torch.device("cpu"), torch.device("cpu"))
    assert torch.equal(ref(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, model(input_ids=ids).logits)
    assert not any(p.requires_grad for p in ref.parameters())
    if torch.cuda.device_count() < 2:
        with pytest.raises(RuntimeError, match="cuda:1 requested"):
            frozen_reference(model, "cuda:1")


def test_a_reuse_dataset_cannot_declare_its_own_bases():
    from qunlearn.config import ConfigError

    cfg = load("config.yaml")
    cfg["datasets"]["synth_plain"]["pretrained"] = {"target": {"path": "/m"}}
    with pytest.raises(ConfigError, match="datasets.synth_plain.pretrained: a reuse dataset"):
        Experiment(cfg)


def test_load_model_keeps_the_stored_dtype(tmp_path):
    """Our tiny float32 checkpoints stay float32 (the default path is unchanged); bf16 stays bf16."""
    from qunlearn.models import load_model

    model = _tiny_model()
    model.save_pretrained(str(tmp_path / "fp32"), safe_serialization=True)
    model.to(torch.bfloat16).save_pretrained(str(tmp_path / "bf16"), safe_serialization=True)
    assert next(load_model(tmp_path / "fp32", device=torch.device("cpu")).parameters()).dtype == torch.float32
    assert next(load_model(tmp_path / "bf16", device=torch.device("cpu")).parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("path", [*MUSE_CONFIGS, "config.yaml", "configs/ci.yaml"])
def test_slurm_profile_plans_the_same_dag(path):
    """The profile's settings (executor, resources, any job grouping) must not change or break the DAG:
    an evaluation group spanning the alpha selection would depend on itself (found on the real
    SLURM run); a dry run needs no cluster."""
    assert planned_jobs("--profile", "profiles/slurm", "--configfile", path) == planned_jobs("--configfile", path)


def test_sharded_memory_plan_and_resources():
    """unlearn.processes N: weights, gradients, AdamW and the reference split N ways, plus two
    all-gathered layers; the job asks for N GPUs on one node and host memory for N + 1 copies."""
    n, w = 6.74e9, 13.48
    one = resources.memory_plan(n, 2, "adamw", reference=True, activations_gb=0)
    four = resources.memory_plan(n, 2, "adamw", reference=True, activations_gb=0, processes=4)
    assert four["main_device"] == pytest.approx(5 * w / 4 + 2 * w / 32, abs=0.01)  # 17.7 GB
    assert four["main_device"] < one["main_device"] / 3
    sure = resources.memory_plan(n, 2, "adamw", reference=True, activations_gb=0, processes=4, saliency_masked=True)
    assert sure["main_device"] == pytest.approx(four["main_device"] + w / 4, abs=0.01)
    cfg = load(MUSE_CONFIGS[0])
    cfg["unlearn"].update(processes=4, reference_device="same")
    cfg["compute"]["max_gpus"] = 4
    exp = Experiment(cfg)
    r = resources.rule_resources(exp, "unlearn", "news", "npo_gdr")
    assert r["gpu"] == 4 and r["nodes"] == 1 and r["mem_mb"] >= 5 * w * 1000
    arm = exp.headline_arms("news")[0]
    assert exp.unlearn_params(arm)["processes"] == 4
    default = Experiment(load(MUSE_CONFIGS[0]))  # the new keys stay out of params at their defaults
    params = default.unlearn_params(default.headline_arms("news")[0])
    assert not {"processes", "micro_batch_size", "autocast"} & set(params)
