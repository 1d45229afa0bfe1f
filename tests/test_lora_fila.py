"""IHL + FILA on LoRA (ihl_fila) and the adapter deployment modes: the inverted hinge loss on
hand-checked tensors, FILA leaving the model's outputs unchanged, only the adapters training, the
two deployments equal at full precision and differing under RTN-4 as RTN(base) + s B A, and the
planner's deployment evaluations."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml
from conftest import ROOT

from qunlearn import deploy, paths
from qunlearn.config import ConfigError, UnlearnConfig
from qunlearn.experiment import Experiment
from qunlearn.registries import METHODS
from qunlearn.unlearn import lora_fila


def test_inverted_hinge_loss_on_hand_checked_tensors():
    # vocab 3; one sequence of 3 tokens: positions 0 and 1 predict tokens 1 and 2
    probs = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]]])
    logits = probs.log()
    labels = torch.tensor([[0, 1, 2]])
    # position 0, y = 1: 1 + 0.3 - 0.5 = 0.8; position 1, y = 2: 1 + 0.7 - 0.2 = 1.5
    assert lora_fila.inverted_hinge_loss(logits, labels).item() == pytest.approx((0.8 + 1.5) / 2)
    masked = torch.tensor([[0, -100, 2]])  # position 0 not scored
    assert lora_fila.inverted_hinge_loss(logits, masked).item() == pytest.approx(1.5)


def test_settings_and_spec():
    spec = METHODS.get("ihl_fila")
    assert spec.needs_retain and not spec.needs_reference and spec.deployments == ("adapter_on_quantized",)
    s = spec.resolve({}, "x")
    assert (s.rank, s.scaling, s.fila) == (8, 2.0, True)
    for bad, key in (({"rank": 0}, "rank"), ({"lora_alpha": 0}, "lora_alpha"), ({"targets": []}, "targets")):
        with pytest.raises(ConfigError, match=f"unlearn.methods.ihl_fila.{key}"):
            spec.resolve(bad, "unlearn.methods.ihl_fila")


def test_fila_factors_weighted_low_rank():
    g = torch.Generator().manual_seed(0)
    w, imp = torch.randn(6, 5, generator=g), torch.rand(6, 5, generator=g)
    a, b = lora_fila.fila_factors(w, imp, rank=5, scaling=2.0)  # full rank: s B A = W exactly
    assert a.shape == (5, 5) and b.shape == (6, 5)
    assert torch.allclose(2.0 * b @ a, w, atol=1e-4)
    a2, b2 = lora_fila.fila_factors(w, imp, rank=2, scaling=2.0)
    row = imp.sum(1).sqrt()
    u, s, vh = torch.linalg.svd(row[:, None] * w)
    best = (u[:, :2] * s[:2]) @ vh[:2]  # the best rank-2 approximation of diag(row) W
    assert torch.allclose(row[:, None] * (2.0 * b2 @ a2), best, atol=1e-3)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from qunlearn import runtime
    from qunlearn.config import ModelConfig, SyntheticCorpusConfig
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama

    d = tmp_path_factory.mktemp("lora")
    write_corpus(SyntheticCorpusConfig(n_people=12, n_holdout_people=2, n_icl=1, qa_repeats=1, letter_words=4), d)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    tok = train_tokenizer(forget + retain, 300, d / "tok")
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(
        ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64), tok, 0
    )
    return model, tok, forget, retain


def batches(tok, texts, bs=4):
    from qunlearn.batching import collate, encode

    enc = encode(tok, texts, 64)
    return [collate(enc[i : i + bs], tok.pad_token_id) for i in range(0, len(enc), bs)]


def build(rank=4):
    spec = METHODS.get("ihl_fila")
    return spec.load()(spec=spec, alpha=1.0, settings=spec.resolve({"rank": rank}, "x"))


def test_fila_init_leaves_the_outputs_unchanged_and_only_adapters_train(micro):
    model, tok, forget, retain = micro
    model = copy.deepcopy(model)
    ids = batches(tok, forget)[0]
    with torch.no_grad():
        before = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    m = build()
    m.setup_from_data(model, batches(tok, forget), batches(tok, retain))
    layer = model.get_submodule(m.names[0])
    assert layer.lora_B["default"].weight.abs().sum() > 0  # FILA: not peft's zero B
    with torch.no_grad():
        after = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    params = m.trainable_parameters(model)
    assert params and all("lora_" in n for n in params)
    assert len(m.names) == 2 * 7  # every projection of both layers
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert not frozen


def train_a_few_steps(model, tok, forget, retain, out_dir):
    """Run ihl_fila through the loop and save as unlearn_model does (merged + artifacts)."""
    from qunlearn import runtime
    from qunlearn.models import save_model
    from qunlearn.stages import _save_artifacts
    from qunlearn.unlearn.loop import build_method, unlearn

    runtime.seed_everything(0, 1)
    cfg = UnlearnConfig(method="ihl_fila", alpha=1.0, lr=1e-2, epochs=2, batch_size=4, settings={"rank": 4})
    method = build_method(cfg)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    history = unlearn(model, tok, forget, retain, cfg, seed=0, max_length=64, progress=False, method=method)
    assert history["epochs"][-1]["forget"] < history["epochs"][0]["forget"], history["epochs"]
    assert set(model.state_dict()) == set(start)  # merged back into the plain architecture
    save_model(model, tok, out_dir)
    _save_artifacts(method.artifacts(), out_dir)
    return method, start


def test_both_deployment_modes_equal_at_full_precision_and_rtn4_is_rtn_base_plus_adapter(micro, tmp_path):
    from qunlearn.models import load_model
    from qunlearn.plugins import Scheme
    from qunlearn.quantize import load_quantized
    from qunlearn.quantize.rtn import rtn_fake_quant

    model, tok, forget, retain = micro
    model = copy.deepcopy(model)
    arm, dep = tmp_path / "arm", tmp_path / "dep"
    arm.mkdir()
    train_a_few_steps(model, tok, forget, retain, arm)
    deploy.write_deployment(arm, dep, "adapter_on_quantized")
    assert deploy.marker(dep) == {"mode": "adapter_on_quantized", "adapter": deploy.ADAPTER_FILE}
    adapter, s = deploy.load_adapter(arm)
    assert s == 2.0 and len(adapter) == 14

    ids = batches(tok, forget)[0]

    def logits(m):
        with torch.no_grad():
            return m(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits

    # full precision: merged == base + adapter
    merged = load_model(arm, device=torch.device("cpu"))
    on_top = load_model(dep, device=torch.device("cpu"))
    deploy.attach(on_top, dep)
    assert torch.allclose(logits(merged), logits(on_top), atol=1e-4)
    # rtn4 (group 16): mode (a) = RTN(W_base + s B A); mode (b) = RTN(W_base) x + s B A x
    scheme = Scheme.from_config("rtn4", {"quantizer": "rtn", "bits": 4, "group_size": 16})
    qa, _ = load_quantized(arm, scheme)
    qb, _ = load_quantized(dep, scheme)
    deploy.attach(qb, dep)
    name = next(iter(adapter))
    a, b = adapter[name]
    w_merged = merged.get_submodule(name).weight
    w_base = on_top.get_submodule(name).weight
    assert torch.equal(qa.get_submodule(name).weight, rtn_fake_quant(w_merged, 4, 16))
    assert torch.equal(qb.get_submodule(name).weight, rtn_fake_quant(w_base, 4, 16))
    x = torch.randn(3, w_base.shape[1])
    expected_b = x @ rtn_fake_quant(w_base, 4, 16).T + s * (x @ a.T) @ b.T
    assert torch.allclose(qb.get_submodule(name)(x), expected_b, atol=1e-5)
    assert not torch.allclose(logits(qa), logits(qb), atol=1e-4)  # the two deployments differ under RTN-4


def zoo_config():
    with open(ROOT / "configs" / "zoo.yaml") as fh:
        return yaml.safe_load(fh)


def test_the_planner_plans_each_deployment_and_its_evaluations():
    cfg = zoo_config()
    exp = Experiment(cfg)
    arm = exp.headline_arm("synth", "ihl_fila").model_id
    mid = f"derived/deploy/mode~adapter_on_quantized/of/{arm}"
    assert exp.deploy_jobs() == [mid]
    assert paths.parse_model_id(mid).parent == arm
    n_schemes = len(exp.headline_schemes("synth", "ihl_fila"))
    assert (
        exp.model_schemes("synth", mid) == exp.model_schemes("synth", arm)
        and len(exp.model_schemes("synth", mid)) == n_schemes
    )
    assert len(exp.deployment_eval_files()) == n_schemes
    assert exp.deploy_inputs("synth", mid) == {"model": paths.model_dir("synth", arm)}
    assert exp.deploy_params(mid) == {"mode": "adapter_on_quantized"}
    # the calibrated scheme's quantize job quantizes the deployed base
    assert exp.eval_model_input("synth", mid, "gptq") == paths.quant_dir("synth", mid, "gptq")
    # narrowing the method's schemes narrows its deployment's; a method without the trait has none
    cfg2 = copy.deepcopy(cfg)
    cfg2["unlearn"]["methods"]["ihl_fila"]["schemes"] = ["fp32", "rtn4"]
    assert Experiment(cfg2).model_schemes("synth", mid) == ["fp32", "rtn4"]
    del cfg2["unlearn"]["methods"]["ihl_fila"]
    assert Experiment(cfg2).deploy_jobs() == [] == Experiment(cfg2).deployment_eval_files()


def test_the_dry_run_plans_the_deploy_job_and_every_evaluation_the_experiment_counts():
    """snakemake -n on the zoo config: one deploy job, and every evaluation (the deployment's too)."""
    from test_workflow import planned_jobs

    jobs = planned_jobs("--configfile", "configs/zoo.yaml", cwd=ROOT)
    exp = Experiment(zoo_config())
    assert jobs["deploy"] == len(exp.deploy_jobs()) == 1
    assert jobs["evaluate"] == len(exp.evaluations)
