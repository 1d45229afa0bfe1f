"""SURE: saliency masks (shape, threshold semantics), real masking in the loop."""

import copy

import pytest
import torch

from qunlearn import runtime
from qunlearn.config import UnlearnConfig
from qunlearn.registries import METHODS
from qunlearn.unlearn import sure
from qunlearn.unlearn.loop import unlearn


def test_row_scores_and_row_level_threshold_hand_checked():
    grads = {"a": torch.tensor([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0]]), "b": torch.tensor([0.5, -3.0, 4.0])}
    assert sure.row_scores(grads["a"]).tolist() == [1.0, 5.0]
    assert sure.row_scores(grads["b"]).tolist() == [0.5, 3.0, 4.0]
    # scores 0.5 1 3 4 5: the 60th percentile (linear) is 3.4 -> keep 5 (a row 1) and 4 (b[2])
    masks = sure.saliency_masks(grads, percentile=60)
    assert masks["a"].tolist() == [False, True] and masks["b"].tolist() == [False, False, True]
    # "at or above": a score equal to the threshold is kept
    assert sure.saliency_masks(grads, percentile=50)["b"].tolist() == [False, True, True]
    assert all(m.all() for m in sure.saliency_masks(grads, percentile=0).values())


def test_module_level_thresholds_whole_tensors():
    grads = {"a": torch.tensor([[1.0, 0.0], [3.0, 4.0]]), "b": torch.tensor([0.5, 3.0, 4.0])}
    masks = sure.saliency_masks(grads, percentile=50, level="module")  # totals 6 and 7.5 -> 6.75
    assert masks["a"].tolist() == [False, False] and masks["b"].tolist() == [True, True, True]
    with pytest.raises(ValueError, match="unknown saliency level"):
        sure.saliency_masks(grads, level="neuron")


def test_apply_masks_zeroes_unselected_rows():
    w = torch.nn.Parameter(torch.zeros(3, 2))
    w.grad = torch.ones(3, 2)
    sure.apply_masks({"w": w}, {"w": torch.tensor([True, False, True])})
    assert w.grad.tolist() == [[1, 1], [0, 0], [1, 1]]


def test_sure_specs_are_masked_variants_of_their_objective():
    masked = {s.name for s in METHODS.specs() if s.saliency_masked}
    assert {"ga_gdr_sure", "ga_klr_sure", "npo_gdr_sure", "npo_klr_sure"} <= masked
    for spec in METHODS.specs():
        assert issubclass(spec.load(), sure.SUREMethod) == spec.saliency_masked, spec.name
        if spec.saliency_masked:
            objective = METHODS.get(spec.objective)
            assert not objective.saliency_masked and spec.name == f"{objective.name}_sure"
            assert (spec.reference_outputs, spec.needs_retain) == (objective.reference_outputs, objective.needs_retain)
            assert {"percentile": 90.0, "level": "row"}.items() <= spec.defaults().items()


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    from qunlearn.config import ModelConfig, SyntheticCorpusConfig
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama

    d = tmp_path_factory.mktemp("sure")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    tok = train_tokenizer(forget + retain, 500, d / "tok")
    cfg = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=128)
    return build_tiny_llama(cfg, tok, 0), tok, forget, retain


def test_masked_rows_are_bit_identical_after_training(micro, monkeypatch):
    model, tok, forget, retain = micro
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    union: dict[str, torch.Tensor] = {}
    original = sure.SUREMethod.masks

    def recording(self, params):
        masks = original(self, params)
        for n, m in masks.items():
            union[n] = union.get(n, torch.zeros_like(m)) | m
        return masks

    monkeypatch.setattr(sure.SUREMethod, "masks", recording)
    runtime.seed_everything(0, 1)
    hist = unlearn(
        model,
        tok,
        forget,
        retain,
        UnlearnConfig(method="ga_gdr_sure", lr=1e-3, epochs=3, batch_size=8, settings={"percentile": 90}),
        seed=0,
        max_length=128,
        progress=False,
    )
    assert 0.05 < hist["kept_fraction"] < 0.2
    changed_rows = 0
    for n, p in model.named_parameters():
        rows_equal = (
            (p.detach() == before[n]).reshape(p.shape[0], -1).all(dim=1) if p.dim() > 1 else p.detach() == before[n]
        )
        never_selected = ~union[n]
        assert rows_equal[never_selected].all(), f"{n}: a masked row changed"
        changed_rows += int((~rows_equal).sum())
    assert changed_rows > 0


def test_forget_gradient_is_counted_once(micro):
    """With nothing masked (percentile 0) a SURE step equals the plain method's step."""
    model, tok, forget, retain = micro
    results = []
    for method, settings in (("ga_gdr", {}), ("ga_gdr_sure", {"percentile": 0})):
        m = copy.deepcopy(model)
        runtime.seed_everything(0, 1)
        unlearn(
            m,
            tok,
            forget,
            retain,
            UnlearnConfig(method=method, lr=1e-3, epochs=1, batch_size=64, alpha=2.0, settings=settings),
            seed=0,
            max_length=128,
            progress=False,
        )
        results.append({n: p.detach().clone() for n, p in m.named_parameters()})
    for n in results[0]:
        torch.testing.assert_close(results[0][n], results[1][n], rtol=1e-5, atol=1e-7)
