"""Selective pruning and the task vector (issue 13): the pruned neurons against an independent
computation of the scores, the quantizers on the all-zero rows and groups pruning leaves, the
task vector's arithmetic to the bit, and the planner's cached fine-tune (one per dataset and seed,
an input of every alpha's unlearn job)."""

import copy
import json
import math

import pytest
import torch
import yaml
from conftest import ROOT
from safetensors.torch import load_file

from qunlearn import paths, runtime
from qunlearn.config import ConfigError, ModelConfig, SyntheticCorpusConfig, UnlearnConfig
from qunlearn.experiment import Experiment
from qunlearn.registries import METHODS
from qunlearn.unlearn.pruning import (
    SelectivePruning,
    SelectivePruningSettings,
    mean_abs_activations,
    neuron_sites,
    scores,
    share,
)

# in_features 128 / 256: GPTQ's and AWQ's group size 128 divides every layer's input width
MICRO = ModelConfig(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=256, max_length=64)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from qunlearn.batching import collate, encode
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama, save_model

    d = tmp_path_factory.mktemp("micro")
    data = d / "data"
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), data)
    forget = muse_format.read_texts(data, "raw", "forget")
    retain = muse_format.read_texts(data, "raw", "retain1")
    texts = forget + retain + muse_format.read_texts(data, "raw", "retain2")
    tok = train_tokenizer(texts, 400, data / "tokenizer")
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    save_model(model, tok, d / "target")

    def batches(t):
        ex = encode(tok, t, MICRO.max_length)
        return [collate(ex[i : i + 8], tok.pad_token_id) for i in range(0, len(ex), 8)]

    return {"dir": d, "data": data, "tok": tok, "forget": batches(forget), "retain": batches(retain)}


def load_target(micro, eager=False):
    from qunlearn.models import load_model

    model = load_model(micro["dir"] / "target", device=torch.device("cpu"))
    if eager:
        model.set_attn_implementation("eager")
    return model


# ---- selective pruning ---------------------------------------------------------------------------
def independent_means(model, batches):
    """Mean |activation| per (layer, neuron) over real tokens, computed without the method's
    hooks: the MLP's act(gate(x)) * up(x) from its input, the attention's pre-output neurons as
    the attention probabilities (eager) times v_proj of its input."""
    layers = model.model.layers
    got = {"mlp": [], "attn": []}
    handles = []
    for layer in layers:

        def mlp_hook(module, args, out):
            x = args[0]
            got["mlp"].append(module.act_fn(module.gate_proj(x)) * module.up_proj(x))

        def attn_hook(module, args, kwargs, out):
            x = kwargs["hidden_states"]
            b, t, _ = x.shape
            v = module.v_proj(x).view(b, t, -1, module.head_dim)
            probs = out[1]  # (b, heads, t, t)
            got["attn"].append(torch.einsum("bhts,bshd->bthd", probs, v).reshape(b, t, -1))

        handles.append(layer.mlp.register_forward_hook(mlp_hook))
        handles.append(layer.self_attn.register_forward_hook(attn_hook, with_kwargs=True))
    sums = {k: torch.zeros(len(layers), w, dtype=torch.float64) for k, w in (("mlp", 256), ("attn", 128))}
    n = 0
    with torch.no_grad():
        for batch in batches:
            got = {"mlp": [], "attn": []}
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True)
            mask = batch["attention_mask"].bool()
            for kind in sums:
                for i, a in enumerate(got[kind]):
                    sums[kind][i] += a[mask].double().abs().sum(0)
            n += int(mask.sum())
    for h in handles:
        h.remove()
    return {k: v / n for k, v in sums.items()}


def method(settings: dict):
    spec = METHODS.get("selective_pruning")
    return SelectivePruning(spec=spec, alpha=1.0, settings=spec.resolve(settings, "t"))


def test_spec_defaults_and_traits():
    spec = METHODS.get("selective_pruning")
    assert spec.gradient_free and spec.needs_retain and not spec.needs_reference and not spec.preparation
    d = spec.defaults()
    assert (d["mlp_fraction"], d["attn_fraction"], d["eps"], d["steps"]) == (0.03, 0.03, 1e-5, 3)
    with pytest.raises(ConfigError, match="alphas: selective pruning has no alpha"):
        spec.resolve({"alphas": [1, 2]}, "unlearn.methods.selective_pruning")
    with pytest.raises(ConfigError, match="both 0"):
        spec.resolve({"mlp_fraction": 0, "attn_fraction": 0}, "m")


def test_the_score_divides_by_retain_plus_1e_5():
    f, r = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    assert scores(f, r, SelectivePruningSettings().eps).tolist() == [2.0 / 1e-5, 1.0 / (1.0 + 1e-5), 0.0]
    # a neuron silent on D_r outranks one merely more active on D_f
    assert scores(torch.tensor([1e-3]), torch.tensor([0.0]), 1e-5) > scores(
        torch.tensor([100.0]), torch.tensor([1.0]), 1e-5
    )


def test_the_activations_equal_an_independent_computation(micro):
    model = load_target(micro, eager=True)
    mine, _ = mean_abs_activations(model, neuron_sites(model), micro["forget"], None)
    ref = independent_means(model, micro["forget"])
    for kind in ("mlp", "attn"):
        assert mine[kind].shape == ref[kind].shape
        assert torch.allclose(mine[kind], ref[kind], rtol=1e-5, atol=1e-9), kind


def test_one_step_zeroes_exactly_the_top_scoring_columns(micro):
    model = load_target(micro, eager=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    f, r = independent_means(model, micro["forget"]), independent_means(model, micro["retain"])
    settings = {"mlp_fraction": 0.05, "attn_fraction": 0.1, "steps": 1, "sample_tokens": None}
    with torch.no_grad():
        rows, stats = method(settings).edit(model, micro["forget"], micro["retain"], None)
    expected = {}
    for kind, frac in (("mlp", 0.05), ("attn", 0.1)):
        s = (f[kind] / (r[kind] + 1e-5)).flatten()
        k = int(frac * s.numel())
        top = set(torch.argsort(s, descending=True)[:k].tolist())
        width = f[kind].shape[1]
        expected[kind] = {layer: sorted(i % width for i in top if i // width == layer) for layer in range(2)}
        assert stats["pruned"][kind]["neurons"] == k == rows[0][f"pruned_{kind}"]
    site = {"mlp": "mlp.down_proj", "attn": "self_attn.o_proj"}
    for name, p in model.named_parameters():
        old = before[name]
        kind = next((k for k, suffix in site.items() if name.endswith(suffix + ".weight")), None)
        if kind is None:
            assert torch.equal(p, old), name  # nothing else moves
            continue
        layer = int(name.split(".")[2])
        zero_cols = sorted((p == 0).all(0).nonzero().flatten().tolist())
        assert zero_cols == expected[kind][layer], name
        keep = torch.ones(p.shape[1], dtype=torch.bool)
        keep[zero_cols] = False
        assert torch.equal(p[:, keep], old[:, keep]), name  # only those columns changed
    assert stats["pruned_indices"]["mlp"] == [expected["mlp"][i] for i in range(2)]


def test_steps_prune_their_share_each_and_rescore(micro):
    model = load_target(micro)
    settings = {"mlp_fraction": 0.1, "attn_fraction": 0.05, "steps": 4, "sample_tokens": None}
    with torch.no_grad():
        rows, stats = method(settings).edit(model, micro["forget"], micro["retain"], None)
    total = {"mlp": int(0.1 * 2 * 256), "attn": int(0.05 * 2 * 128)}
    assert len(rows) == 4
    for kind in ("mlp", "attn"):
        assert [row[f"pruned_{kind}"] for row in rows] == [
            sum(share(total[kind], 4, j) for j in range(i + 1)) for i in range(4)
        ]
        assert stats["pruned"][kind]["neurons"] == total[kind]
    assert [share(10, 4, j) for j in range(4)] == [2, 3, 2, 3]
    # the forget NLL is measured while scoring each step: it moves as neurons go
    assert len({round(row["forget"], 6) for row in rows}) == 4
    zero = sum(int((m.weight == 0).all(0).sum()) for m in neuron_sites(model)["mlp"])
    assert zero == total["mlp"]


def test_pruning_runs_through_the_loop_with_the_history_shape(micro):
    from qunlearn.data import muse_format
    from qunlearn.unlearn.loop import unlearn

    model = load_target(micro)
    forget = muse_format.read_texts(micro["data"], "raw", "forget")
    retain = muse_format.read_texts(micro["data"], "raw", "retain1")
    cfg = UnlearnConfig(method="selective_pruning", epochs=1, batch_size=8, settings={"steps": 2})
    history = unlearn(model, micro["tok"], forget, retain, cfg, seed=0, max_length=64, progress=False)
    assert history["steps"] == 2 and [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert {"forget", "retain", "loss"} <= set(history["epochs"][0])
    assert history["n_forget_chunks"] > 0 and history["n_retain_chunks"] > 0
    assert history["local_state_mb"]["optimizer"] == 0.0


# ---- quantizers on the zeros pruning leaves --------------------------------------------------------
def zeroed_weight():
    torch.manual_seed(0)
    w = torch.randn(6, 256)
    w[0] = 0  # an all-zero row (output channel)
    w[1, :128] = 0  # an all-zero group (group size 128)
    w[:, 7] = 0  # a pruned column
    return w


def test_rtn_on_an_all_zero_row_and_group_gives_zeros_without_nan():
    from qunlearn.quantize.rtn import rtn_codes, rtn_fake_quant

    w = zeroed_weight()
    for bits in (8, 4, 2):
        for group in (128, None):
            q = rtn_fake_quant(w, bits, group)
            codes, scale = rtn_codes(w, bits, group)
            assert torch.isfinite(q).all() and torch.isfinite(scale).all()
            assert (q[0] == 0).all() and (q[:, 7] == 0).all() and (codes[0] == 0).all()
            if group:
                assert (q[1, :128] == 0).all()


def test_bitsandbytes_on_an_all_zero_row_and_group_gives_zeros_without_nan():
    import bitsandbytes.functional as F

    from qunlearn.quantize.bnb import int8_codes, int8_dequantize, quantize_4bit

    w = zeroed_weight()
    d = int8_dequantize(*int8_codes(w))
    assert torch.isfinite(d).all() and (d[0] == 0).all() and (d[:, 7] == 0).all()
    for qt in ("fp4", "nf4"):
        for double in (False, True):
            d = F.dequantize_4bit(*quantize_4bit(w, qt, 64, double))
            assert torch.isfinite(d).all() and (d[0] == 0).all() and (d[1, :128] == 0).all(), (qt, double)
            assert (d[:, 7] == 0).all()


@pytest.fixture(scope="module")
def zeroed_model(micro):
    """The micro target with layer 0's down_proj given an all-zero row, an all-zero group and a
    pruned column, and o_proj a pruned column."""
    from qunlearn.models import save_model

    model = load_target(micro)
    with torch.no_grad():
        down = model.model.layers[0].mlp.down_proj.weight
        down[0] = 0
        down[1, :128] = 0
        down[:, 7] = 0
        model.model.layers[0].self_attn.o_proj.weight[:, 3] = 0
    out = micro["dir"] / "zeroed"
    save_model(model, micro["tok"], out)
    return out


@pytest.mark.parametrize(
    "kw", [{"quantizer": "rtn", "bits": 4, "group_size": 128}, {"quantizer": "bnb_int8"}, {"quantizer": "bnb_nf4"}]
)
def test_on_the_fly_quantizers_run_a_pruned_model(micro, zeroed_model, kw):
    from qunlearn.plugins import Scheme
    from qunlearn.quantize import load_quantized

    model, _ = load_quantized(zeroed_model, Scheme.from_config("q", kw))
    ids = micro["forget"][0]["input_ids"][:2]
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


@pytest.mark.parametrize("quantizer", ["gptq", "awq"])
def test_calibrated_quantizers_keep_the_zeros_of_a_pruned_model(micro, zeroed_model, tmp_path, quantizer):
    from qunlearn.plugins import Scheme
    from qunlearn.stages import quantize_checkpoint

    s = Scheme.from_config("q", {"quantizer": quantizer, "calibration_samples": 4, "calibration_max_length": 32})
    quantize_checkpoint(zeroed_model, micro["data"], tmp_path / "q", s.resolved(), seed=0, threads=1)
    weights = load_file(str(tmp_path / "q" / "model.safetensors"))
    codes = load_file(str(tmp_path / "q" / "quant_codes.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert all(torch.isfinite(v.float()).all() for v in codes.values())
    down = weights["model.layers.0.mlp.down_proj.weight"]
    assert (down[0] == 0).all() and (down[1, :128] == 0).all()
    # the pruned columns also stay zero here: GPTQ's error feedback moves them by less than half a
    # 4-bit step before they are rounded (not guaranteed in general), AWQ scales them (0 * s = 0)
    assert (down[:, 7] == 0).all()
    assert (weights["model.layers.0.self_attn.o_proj.weight"][:, 3] == 0).all()


# ---- task vector -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finetuned(micro):
    """A stand-in for the fine-tuned model: the target plus a seeded perturbation of every tensor."""
    from qunlearn.models import save_model

    model = load_target(micro)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-2 * torch.randn(p.shape, generator=gen))
    out = micro["dir"] / "finetuned"
    save_model(model, micro["tok"], out)
    return out


def run_task_vector(micro, finetuned, out, alpha):
    from qunlearn.stages import unlearn_model

    cfg = {"method": "task_vector", "alpha": alpha, "batch_size": 8, "epochs": 1, "settings": {}}
    return unlearn_model(
        micro["dir"] / "target", micro["data"], out, cfg, 64, 0, 1, progress=False, prepared_dir=finetuned
    )


def test_task_vector_is_exact_in_float64(micro, finetuned, tmp_path):
    meta = run_task_vector(micro, finetuned, tmp_path / "u", 5.0)
    t = load_file(str(micro["dir"] / "target" / "model.safetensors"))
    ft = load_file(str(finetuned / "model.safetensors"))
    u = load_file(str(tmp_path / "u" / "model.safetensors"))
    assert t.keys() == ft.keys() == u.keys()
    for k in t:
        t64, ft64 = t[k].double(), ft[k].double()
        assert torch.equal(u[k], (t64 - 5.0 * (ft64 - t64)).to(t[k].dtype)), k
        assert not torch.equal(u[k], t[k]), k
    hist = meta["history"]
    assert hist["steps"] == 1 and hist["task_vector_norm"] > 0 and math.isfinite(hist["epochs"][0]["forget"])
    assert meta["inputs"]["prepared"]["path"] == str(finetuned)


def test_task_vector_at_alpha_0_is_the_target_bit_for_bit(micro, finetuned, tmp_path):
    run_task_vector(micro, finetuned, tmp_path / "u0", 0.0)
    t = load_file(str(micro["dir"] / "target" / "model.safetensors"))
    u = load_file(str(tmp_path / "u0" / "model.safetensors"))
    assert all(torch.equal(u[k], t[k]) for k in t)


def test_the_preparation_fine_tunes_the_target_on_the_forget_set_with_a_cosine_schedule(micro, tmp_path):
    from qunlearn.stages import prepare_method
    from qunlearn.unlearn.task_vector import FinetuneForget, TaskVectorSettings

    spec = METHODS.get("task_vector")
    assert spec.gradient_free and spec.preparation and not spec.needs_retain
    d = spec.defaults()
    assert (d["finetune_epochs"], d["finetune_lr"], d["finetune_scheduler"]) == (10, 1e-5, "cosine")
    f = FinetuneForget(spec=spec, alpha=0.0, settings=TaskVectorSettings()).lr_schedule(10)
    assert [f(0), f(5), f(10)] == [1.0, pytest.approx(0.5), pytest.approx(0.0)]
    cfg = {"method": "task_vector", "batch_size": 8, "settings": {"finetune_epochs": 2, "finetune_lr": 1e-3}}
    meta = prepare_method(micro["dir"] / "target", micro["data"], tmp_path / "ft", cfg, 64, 0, 1, progress=False)
    h = meta["history"]
    assert h["steps"] == 2 * math.ceil(h["n_forget_chunks"] / 8) and h["n_retain_chunks"] == 0
    assert h["epochs"][1]["forget"] < h["epochs"][0]["forget"]  # gradient descent on D_f
    assert meta["config"]["training"]["lr"] == 1e-3 and meta["config"]["training"]["epochs"] == 2
    t = load_file(str(micro["dir"] / "target" / "model.safetensors"))
    ft = load_file(str(tmp_path / "ft" / "model.safetensors"))
    assert any(not torch.equal(t[k], ft[k]) for k in t)


# ---- planner ---------------------------------------------------------------------------------------
@pytest.fixture
def zoo_config():
    with open(ROOT / "configs" / "zoo.yaml") as fh:
        return copy.deepcopy(yaml.safe_load(fh))


def test_the_fine_tune_is_planned_once_and_every_alpha_reads_it(zoo_config):
    zoo_config["unlearn"]["methods"]["task_vector"]["alphas"] = [1, 5]
    exp = Experiment(zoo_config)
    assert exp.prepare_jobs() == [("synth", "task_vector", "0")]
    prepared = paths.prepared_dir("synth", "task_vector", 0)
    assert prepared == "results/synth/models/prepared/task_vector/seed~0" and exp.prepare_dirs() == [prepared]
    assert paths.parse_prepared_dir(prepared) == ("synth", "task_vector", "0")
    arms = [a for a in exp.unlearn_jobs() if a.method == "task_vector"]
    assert sorted(a.alpha for a in arms) == ["1", "5", "selected"]
    assert all(exp.unlearn_inputs(a)["prepared"] == prepared for a in arms)
    assert all("prepared" not in exp.unlearn_inputs(a) for a in exp.unlearn_jobs() if a.method != "task_vector")
    assert exp.prepare_inputs("synth") == {"base": "results/synth/models/target", "data": "results/synth/data"}
    # the fine-tune's params: the method's own settings, not alpha (nor the arm's lr, epochs, loss)
    params = exp.prepare_params("synth", "task_vector")
    assert not {"alpha", "lr", "epochs", "loss_variant"} & set(params)
    assert params["settings"] == {
        "finetune_epochs": 40,
        "finetune_lr": 3e-5,
        "finetune_scheduler": "cosine",
        "finetune_max_grad_norm": 1.0,
    }
    one_alpha = copy.deepcopy(zoo_config)
    one_alpha["unlearn"]["methods"]["task_vector"]["alphas"] = [7]
    assert Experiment(one_alpha).prepare_params("synth", "task_vector") == params
    other_lr = copy.deepcopy(zoo_config)
    other_lr["unlearn"]["methods"]["task_vector"]["finetune_lr"] = 1e-4
    assert Experiment(other_lr).prepare_params("synth", "task_vector") != params


def test_a_seed_replicate_fine_tunes_with_its_own_seed(zoo_config):
    zoo_config["seeds"] = [0, 1]
    zoo_config["unlearn"]["methods"]["task_vector"]["alphas"] = [1, 5]
    exp = Experiment(zoo_config)
    assert exp.prepare_jobs() == [("synth", "task_vector", "0"), ("synth", "task_vector", "1")]
    rep = [a for a in exp.replicate_arms() if a.method == "task_vector"]
    assert [exp.unlearn_inputs(a)["prepared"] for a in rep] == ["results/synth/models/prepared/task_vector/seed~1"]


def test_sweeps_reject_gradient_free_methods(zoo_config):
    zoo_config["sweeps"] = {"lr": {"methods": ["ga_gdr", "selective_pruning"], "lrs": [1e-3], "schemes": ["fp32"]}}
    with pytest.raises(ConfigError, match="sweeps.lr.methods: 'selective_pruning' is gradient-free"):
        Experiment(zoo_config)


def test_dry_run_of_the_zoo_plans_one_fine_tune(zoo_config, tmp_path):
    from test_workflow import planned_jobs

    zoo_config["unlearn"]["methods"]["task_vector"]["alphas"] = [1, 5]
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(zoo_config))
    jobs = planned_jobs("--configfile", str(path))
    exp = Experiment(zoo_config)
    assert jobs["prepare_method"] == 1
    # per method: its grid and the selected arm (two or more alphas), else the one arm
    methods = zoo_config["unlearn"]["methods"]
    n_arms = sum(len(m["alphas"]) + 1 if len(m.get("alphas") or []) > 1 else 1 for m in methods.values())
    sweep = (zoo_config.get("sweeps") or {}).get("lr")
    if sweep:  # the lr sweep's arms beyond each swept method's own lr
        lr_of = lambda m: float(methods[m].get("lr", zoo_config["unlearn"]["lr"]))  # noqa: E731
        n_arms += sum(len({float(v) for v in sweep["lrs"]} - {lr_of(m)}) for m in sweep["methods"])
    assert methods["task_vector"]["alphas"] == [1, 5] and n_arms >= 3 + 1 + 3
    assert jobs["unlearn"] == len(exp.unlearn_jobs()) == n_arms
    assert jobs["evaluate"] == len(exp.evaluations)
    json.dumps(exp.prepare_params("synth", "task_vector"))  # a JSON param
