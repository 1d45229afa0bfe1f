"""Gradient accumulation: micro-batches of an effective batch give the step of the whole batch, for
every registered method (SURE's masks from the whole batch's forget gradient included), and for
training; the split itself; bf16 autocast on the CPU."""

import pytest
import torch

from qunlearn import runtime
from qunlearn.config import ConfigError, ModelConfig, SyntheticCorpusConfig, TrainConfig, UnlearnConfig, from_dict
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.models import build_tiny_llama
from qunlearn.registries import METHODS
from qunlearn.train import train_until_memorised
from qunlearn.unlearn.loop import micro_batches, split, unlearn

MICRO = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=128)
# fp32 weights after 4+ AdamW steps at lr 1e-3: only the summation order of the gradients differs
# (and the padded length of each forward). AdamW divides each entry's gradient by its running RMS,
# so embedding rows of rare tokens, whose gradients are near zero, carry rounding noise up to a few
# tenths of one lr step (measured max |diff| 1.8e-4, NPO_KLR, in 3 embedding rows); every other
# entry agrees to ~2e-6.
ATOL, RTOL = 5e-4, 1e-4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(d, "raw", s)]
    tok = train_tokenizer(texts, 600, d / "tokenizer")
    return d, tok


def run(corpus, method, **kw):
    d, tok = corpus
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    cfg = UnlearnConfig(method=method, alpha=1.0, lr=1e-3, epochs=2, batch_size=8, **kw)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    extra = {split: muse_format.read_texts(d, "raw", split) for split in METHODS[method].reads_splits}
    hist = unlearn(model, tok, forget, retain, cfg, seed=0, max_length=64, progress=False, extra_texts=extra)
    return model.state_dict(), hist


def test_split_and_plan():
    assert split(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split([0], 3) == [[0], [], []]
    # batch 8, micro 3 -> 3 chunks; retain 8 -> 3 chunks too
    plan = micro_batches(list(range(8)), list(range(10, 18)), 3)
    assert [len(f) for f, _ in plan] == [3, 3, 2] and [len(r) for _, r in plan] == [3, 3, 2]
    # a short last forget batch: as many chunks as the retain side needs, some forget chunks empty
    plan = micro_batches([0], list(range(10, 18)), 4)
    assert [len(f) for f, _ in plan] == [1, 0] and [len(r) for _, r in plan] == [4, 4]
    # 2 processes, no micro size: one chunk per process; micro 3 over 2 processes: 4 chunks
    assert len(micro_batches(list(range(8)), None, None, world=2)) == 2
    assert len(micro_batches(list(range(8)), None, 3, world=2)) == 4
    assert micro_batches(list(range(8)), None, None) == [(list(range(8)), None)]


@pytest.mark.parametrize("method", [s.name for s in METHODS.specs() if not s.gradient_free])
def test_micro_batches_give_the_batch_step(corpus, method):
    """Weights after 4 steps (2 epochs of 2 batches of 8) with micro-batches of 3 (chunks 3+3+2, of
    unequal token counts) equal those with the whole batch at once."""
    whole, h1 = run(corpus, method)
    accumulated, h2 = run(corpus, method, micro_batch_size=3)
    assert h2["micro_batches_per_step"] == 3 and h1["steps"] == h2["steps"] >= 4, (h1["steps"], h2)
    moved = max((whole[k] - v).abs().max().item() for k, v in run_init(corpus).items())
    assert moved > 1e-3  # the steps did move the weights (so equality below is not vacuous)
    for k in whole:
        assert torch.allclose(whole[k], accumulated[k], atol=ATOL, rtol=RTOL), (method, k)
    # the history's losses are the effective batch's (token/sequence-weighted means)
    for a, b in zip(h1["epochs"], h2["epochs"]):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (method, key)
    if "kept_fraction" in h1:
        assert h1["kept_fraction"] == pytest.approx(h2["kept_fraction"])


def run_init(corpus):
    _, tok = corpus
    runtime.seed_everything(0, 1)
    return build_tiny_llama(MICRO, tok, 0).state_dict()


def test_weighing_by_sequences_instead_of_tokens_would_not_match(corpus, monkeypatch):
    """The token-count shares matter: GA_GDR's token-mean terms weighed by sequences (chunks of
    unequal token counts) move the weights measurably away from the batch step."""
    from qunlearn.unlearn import objectives

    whole, _ = run(corpus, "ga_gdr")
    monkeypatch.setattr(
        objectives.ObjectiveMethod,
        "term_sizes",
        lambda self, fb, rb: {"forget": fb["labels"].shape[0], "retain": rb["labels"].shape[0]},
    )
    wrong, _ = run(corpus, "ga_gdr", micro_batch_size=3)
    assert max((whole[k] - wrong[k]).abs().max().item() for k in whole) > 4 * ATOL


def test_training_accumulates_to_the_batch_step(corpus):
    d, tok = corpus
    texts = muse_format.read_texts(d, "raw", "retain1")
    states = []
    for micro in (None, 3):
        runtime.seed_everything(0, 1)
        model = build_tiny_llama(MICRO, tok, 0)
        cfg = TrainConfig(lr=3e-3, batch_size=8, micro_batch_size=micro, warmup_steps=1, max_epochs=2, check_every=5)
        hist = train_until_memorised(model, tok, texts, {}, cfg, seed=0, max_length=64, progress=False)
        states.append((model.state_dict(), hist["final_loss"]))
    (a, la), (b, lb) = states
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL, rtol=RTOL), k
    assert la == pytest.approx(lb, rel=1e-5)


def test_micro_batch_size_is_checked():
    with pytest.raises(ConfigError, match=r"unlearn.micro_batch_size: must be in 1..batch_size \(8\)"):
        from_dict(UnlearnConfig, {"batch_size": 8, "micro_batch_size": 9}, "unlearn")
    with pytest.raises(ConfigError, match=r"train.micro_batch_size"):
        from_dict(TrainConfig, {"batch_size": 8, "micro_batch_size": 0}, "train")
    with pytest.raises(ConfigError, match=r"unlearn.autocast: 'float16' unknown"):
        from_dict(UnlearnConfig, {"autocast": "float16"}, "unlearn")
    with pytest.raises(ConfigError, match=r"unlearn.reference_device: 'cpu' with processes 2"):
        from_dict(UnlearnConfig, {"processes": 2, "reference_device": "cpu"}, "unlearn")


def test_bf16_autocast_runs_the_forward_in_bf16_and_keeps_fp32_weights(corpus):
    """unlearn.autocast: bfloat16 (on the CPU here; on a GPU the same context with device cuda):
    the weights stay fp32, the step differs from the fp32 one by bf16 rounding only."""
    fp32, _ = run(corpus, "npo_gdr")
    bf16, hist = run(corpus, "npo_gdr", autocast="bfloat16")
    assert all(v.dtype == torch.float32 for v in bf16.values())
    diff = max((fp32[k] - bf16[k]).abs().max().item() for k in fp32)
    assert 0 < diff < 1e-2
    assert all(torch.isfinite(torch.tensor(list(e.values()))).all() for e in hist["epochs"])
