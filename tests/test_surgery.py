"""LLM Surgery: its loss on hand-checked tiny tensors, the update split reaching the loop through
the spec's ``reads_splits``, a few steps on a micro model lowering its objective, and the config
error of a dataset without an update split."""

import copy
import math

import pytest
import torch
import yaml
from conftest import ROOT

from qunlearn.config import ConfigError, UnlearnConfig
from qunlearn.experiment import Experiment
from qunlearn.registries import METHODS
from qunlearn.unlearn.losses import kl_retain_loss, token_nll


def method(alpha=1.0, **settings):
    spec = METHODS.get("llm_surgery")
    return spec.load()(spec=spec, alpha=alpha, settings=spec.resolve(settings, "llm_surgery"))


class Logits:
    """A stand-in model returning fixed logits, whatever the batch."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, input_ids=None, attention_mask=None):
        return type("Out", (), {"logits": self.logits})()


def batch(labels, mask=None):
    labels = torch.tensor(labels)
    return {
        "input_ids": torch.zeros_like(labels),
        "labels": labels,
        "attention_mask": torch.ones_like(labels) if mask is None else torch.tensor(mask),
    }


def test_the_spec_declares_the_update_split_and_its_traits():
    spec = METHODS["llm_surgery"]
    assert spec.reads_splits == ("update",)
    assert spec.needs_retain and spec.reference_outputs == ("logits",)
    assert all(METHODS[m].reads_splits == () for m in METHODS if m != "llm_surgery")


def test_loss_on_hand_checked_tensors():
    # vocab 2; uniform logits: every scored token's NLL is log 2; the reference equal: KL 0
    uniform = torch.zeros(1, 2, 2)
    m = method(alpha=3.0, update_weight=0.5)
    fb, ub, rb = batch([[0, 1]]), batch([[0, 0]]), batch([[0, 1]])
    out = m.losses(Logits(uniform), Logits(uniform), fb, rb, extra={"update": ub})
    assert out["forget"].item() == pytest.approx(-math.log(2))
    assert out["update"].item() == pytest.approx(math.log(2))
    assert out["retain"].item() == pytest.approx(0.0, abs=1e-7)
    assert out["loss"].item() == pytest.approx(-math.log(2) + 0.5 * math.log(2))


def test_loss_weighs_each_term_as_the_paper_writes_it():
    # logits [2, 0] at the scored position: p(0) = e^2/(e^2+1); KL to a uniform reference
    logits = torch.tensor([[[2.0, 0.0], [2.0, 0.0]]])
    ref = torch.zeros(1, 2, 2)
    p0 = math.exp(2) / (math.exp(2) + 1)
    nll0, nll1 = -math.log(p0), -math.log(1 - p0)
    kl = 0.5 * (math.log(0.5 / p0) + math.log(0.5 / (1 - p0)))  # KL(uniform || p) at every position
    m = method(alpha=2.0, update_weight=1.0)
    out = m.losses(Logits(logits), Logits(ref), batch([[0, 0]]), batch([[0, 0]]), extra={"update": batch([[0, 1]])})
    assert out["forget"].item() == pytest.approx(-nll0, rel=1e-5)
    assert out["update"].item() == pytest.approx(nll1, rel=1e-5)
    assert out["retain"].item() == pytest.approx(kl, rel=1e-5)
    assert out["loss"].item() == pytest.approx(-nll0 + nll1 + 2.0 * kl, rel=1e-5)
    # the library functions agree
    assert out["update"].item() == pytest.approx(token_nll(logits, torch.tensor([[0, 1]])).item())
    assert out["retain"].item() == pytest.approx(kl_retain_loss(logits, ref, torch.ones(1, 2)).item())


def test_bad_update_weight_names_the_key():
    with pytest.raises(ConfigError, match=r"llm_surgery\.update_weight"):
        method(update_weight=-1.0)


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    from qunlearn import runtime
    from qunlearn.config import ModelConfig, SyntheticCorpusConfig, TrainConfig
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama
    from qunlearn.train import train_until_memorised

    d = tmp_path_factory.mktemp("surgery")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    update = muse_format.read_texts(d, "raw", "update")
    tok = train_tokenizer(forget + retain + update, 500, d / "tok")
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(
        ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=128), tok, 0
    )
    train_until_memorised(
        model,
        tok,
        forget + retain,
        {},
        TrainConfig(lr=3e-3, batch_size=8, warmup_steps=2, max_epochs=10, check_every=100),
        seed=0,
        max_length=128,
        progress=False,
    )
    return model, tok, forget, retain, update


def test_a_few_steps_lower_the_objective_and_the_update_nll(micro_model):
    from qunlearn import runtime
    from qunlearn.unlearn.loop import unlearn

    model, tok, forget, retain, update = micro_model
    model = copy.deepcopy(model)
    runtime.seed_everything(0, 1)
    cfg = UnlearnConfig(method="llm_surgery", alpha=1.0, lr=1e-3, epochs=4, batch_size=4)
    history = unlearn(
        model, tok, forget, retain, cfg, seed=0, max_length=128, progress=False, extra_texts={"update": update}
    )
    first, last = history["epochs"][0], history["epochs"][-1]
    assert last["loss"] < first["loss"], history["epochs"]
    assert last["update"] < first["update"] and last["forget"] < first["forget"]
    assert history["n_update_chunks"] == len(update)
    assert all(math.isfinite(v) for e in history["epochs"] for v in e.values())


def test_the_loop_refuses_the_method_without_its_split(micro_model):
    from qunlearn.unlearn.loop import unlearn

    model, tok, forget, retain, _ = micro_model
    cfg = UnlearnConfig(method="llm_surgery", alpha=1.0, lr=1e-3, epochs=1, batch_size=4)
    with pytest.raises(ValueError, match="llm_surgery reads split 'update'"):
        unlearn(copy.deepcopy(model), tok, forget, retain, cfg, seed=0, max_length=128, progress=False)


@pytest.fixture
def zoo_config():
    with open(ROOT / "configs" / "zoo.yaml") as fh:
        return yaml.safe_load(fh)


def test_the_zoo_runs_it_on_the_synthetic_dataset(zoo_config):
    exp = Experiment(zoo_config)
    assert "llm_surgery" in exp.dataset_methods("synth")


def test_a_dataset_without_an_update_split_rejects_it_naming_dataset_and_method(zoo_config):
    zoo_config["datasets"]["books"] = {"source": "muse", "muse": {}}
    with pytest.raises(ConfigError, match=r"llm_surgery.*raw/update.*dataset 'books' \(source: muse\)"):
        Experiment(zoo_config)
    # restricted to the synthetic dataset it is fine
    zoo_config["datasets"]["books"]["methods"] = [m for m in zoo_config["unlearn"]["methods"] if m != "llm_surgery"]
    Experiment(zoo_config)
