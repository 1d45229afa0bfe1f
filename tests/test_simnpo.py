"""SimNPO: the loss against a hand computation, its spec, and a real run through the loop."""

import math

import pytest
import torch

from qunlearn.config import UnlearnConfig
from qunlearn.registries import METHODS
from qunlearn.unlearn.simnpo import SimNPOSettings, simnpo_loss


def test_loss_equals_the_formula_on_a_hand_checked_batch():
    # vocabulary 2, uniform logits: every scored token has log p = log 1/2
    logits = torch.zeros(2, 4, 2)
    labels = torch.tensor([[0, 1, 0, 1], [0, 1, -100, -100]])  # 3 and 1 scored tokens
    beta, gamma = 0.7, 0.5
    # length-normalised log-likelihood is log(1/2) for both sequences
    per_seq = -(2 / beta) * math.log(1 / (1 + math.exp(-(-beta * math.log(0.5) - gamma))))
    assert simnpo_loss(logits, labels, beta, gamma).item() == pytest.approx(per_seq, rel=1e-6)
    # the normalisation: doubling the scored length of a uniform sequence leaves its term unchanged
    longer = torch.zeros(1, 7, 2)
    assert simnpo_loss(longer, torch.zeros(1, 7, dtype=torch.long), beta, gamma).item() == pytest.approx(
        simnpo_loss(logits[:1], labels[:1], beta, gamma).item(), rel=1e-6
    )


def test_spec_needs_no_reference_and_reads_retain_data():
    spec = METHODS.get("simnpo")
    assert not spec.needs_reference and spec.needs_retain
    assert spec.defaults()["beta"] == 0.7 and spec.defaults()["gamma"] == 0.0
    assert SimNPOSettings(beta=0.75).own() == {"beta": 0.75, "gamma": 0.0}


def test_simnpo_runs_through_the_loop_and_raises_the_forget_loss(tmp_path):
    from qunlearn import runtime
    from qunlearn.config import ModelConfig, SyntheticCorpusConfig, TrainConfig
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama
    from qunlearn.train import train_until_memorised
    from qunlearn.unlearn.loop import unlearn

    write_corpus(
        SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), tmp_path
    )
    forget = muse_format.read_texts(tmp_path, "raw", "forget")
    retain = muse_format.read_texts(tmp_path, "raw", "retain1")
    tok = train_tokenizer(forget + retain, 500, tmp_path / "tok")
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(
        ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=128), tok, 0
    )
    train_until_memorised(
        model,
        tok,
        forget + retain,
        {},
        TrainConfig(lr=3e-3, batch_size=8, warmup_steps=2, max_epochs=30, check_every=100),
        seed=0,
        max_length=128,
        progress=False,
    )
    cfg = UnlearnConfig(
        method="simnpo", alpha=0.1, lr=1e-3, epochs=5, batch_size=4, settings={"beta": 0.7, "gamma": 0.0}
    )
    history = unlearn(model, tok, forget, retain, cfg, seed=0, max_length=128, progress=False)
    first, last = history["epochs"][0], history["epochs"][-1]
    assert last["forget"] < first["forget"]  # the SimNPO term falls as the forget likelihood drops
    assert history["n_retain_chunks"] > 0
