"""The zoo's methods (RMU, the release's RMU, BLUR, quantization-aware unlearning): each loss on
hand-checked tiny tensors, the BLUR projection and the STE, config errors naming the key, and a few
steps of each on a micro model lowering its forget objective."""

import copy
import math

import pytest
import torch

from qunlearn.config import ConfigError, UnlearnConfig
from qunlearn.registries import METHODS
from qunlearn.unlearn import blur, quant_aware, rmu


def method(name, alpha=1.0, variant="faithful", **settings):
    spec = METHODS.get(name)
    return spec.load()(spec=spec, alpha=alpha, settings=spec.resolve(settings, name), loss_variant=variant)


class Fixed:
    """A stand-in model returning fixed hidden states (by input row) and logits."""

    def __init__(self, states):
        self.states = states

    def __call__(self, input_ids=None, attention_mask=None, output_hidden_states=False):
        return type("Out", (), {"hidden_states": self.states, "logits": None})()


# ---- RMU ----------------------------------------------------------------------------------------


def test_position_mse_on_a_hand_checked_batch():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # batch 1, 2 positions, d 2
    target = torch.tensor([0.0, 2.0])
    # position 0: (1 + 0) / 2 = 0.5; position 1: (9 + 4) / 2 = 6.5
    assert rmu.position_mse(h, target, torch.tensor([[1, 0]])).item() == pytest.approx(0.5)
    assert rmu.position_mse(h, target, None).item() == pytest.approx(3.5)
    # squared norms (the release): 1 and 13
    assert rmu.position_mse(h, target, None, "sum").item() == pytest.approx(7.0)


def test_rmu_loss_value_control_vector_and_layers():
    m = method("rmu", alpha=100.0, steering_coeff=2.0)
    model = torch.nn.Linear(1, 1)
    model.config = type("C", (), {"num_hidden_layers": 4, "hidden_size": 2})()
    torch.manual_seed(5)
    m.setup(model, None, None)
    assert (m.layer, m.update_layers) == (1, [0, 1])  # round(7/32 * 4) = 1, layers l-2..l clipped at 0
    u = torch.rand(2, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(m.control, u / u.norm() * 2.0) and m.control.norm().item() == pytest.approx(2.0)
    # hand-checked loss: layer 1's output is hidden_states[2]
    m.control = torch.tensor([0.0, 2.0])
    h_f = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    h_r, h_ref = torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[0.0, 1.0]]])
    out_f = [None, None, h_f]
    out_r = [None, None, h_r]
    out_ref = [None, None, h_ref]
    fb = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "attention_mask": torch.tensor([[1, 0]])}
    rb = {"input_ids": torch.ones(1, 1, dtype=torch.long), "attention_mask": torch.ones(1, 1, dtype=torch.long)}

    class Model:
        def __call__(self, input_ids, attention_mask=None, output_hidden_states=False):
            states = out_f if input_ids.shape[1] == 2 else out_r
            return type("O", (), {"hidden_states": states})()

    terms = m.losses(Model(), Fixed(out_ref), fb, rb)
    assert terms["forget"].item() == pytest.approx(0.5)  # the masked position does not count
    assert terms["retain"].item() == pytest.approx(0.5)  # ((1 - 0)^2 + 0) / 2
    assert terms["loss"].item() == pytest.approx(0.5 + 100 * 0.5)
    assert m.term_sizes(fb, rb) == {"forget": 1, "retain": 1}
    paper = method("rmu", variant="paper_code")
    assert paper.term_sizes(fb, rb) == {"forget": 2, "retain": 1}  # every padded position


def test_rmu_depth_scaling_and_layer_errors():
    assert [rmu.resolve_layer(None, n) for n in (32, 4, 1)] == [7, 1, 0]
    assert rmu.default_update_layers(7) == [5, 6, 7]
    with pytest.raises(ConfigError, match=r"unlearn.methods.rmu.layer: 4 is not a layer of this 4-layer model"):
        rmu.resolve_layer(4, 4)


def test_rmu_release_redraws_u_every_step_with_alpha_as_its_norm():
    m = method("rmu_release", alpha=3.0)
    model = torch.nn.Linear(1, 1)
    model.config = type("C", (), {"num_hidden_layers": 2, "hidden_size": 64})()
    m.setup(model, None, None)
    first = m.control.clone()
    assert first.norm().item() == pytest.approx(3.0) and (first < 0).any()  # uniform [-1, 1), normalised
    m.transform_gradients({})
    assert m.control.norm().item() == pytest.approx(3.0) and not torch.equal(first, m.control)
    # squared norms summed over d, averaged over positions; retain weighted by alpha
    m.control = torch.tensor([0.0, 2.0])
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    b = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2, dtype=torch.long)}
    terms = m.losses(Fixed([None, h]), Fixed([None, h * 0]), b, b)
    assert terms["forget"].item() == pytest.approx(7.0)
    assert terms["retain"].item() == pytest.approx((5 + 25) / 2)
    assert terms["loss"].item() == pytest.approx(7.0 + 3.0 * 15.0)


# ---- BLUR ---------------------------------------------------------------------------------------


def test_blur_projection_is_orthogonal_to_the_forget_gradient_and_the_step_is_the_formula():
    g_r = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    g_f = [torch.tensor([0.0, 1.0]), torch.tensor([1.0])]
    # <g_r, g_f> = 2 + 3 = 5, ||g_f||^2 = 2: coefficient 2.5
    projected, coef = blur.blur_direction(g_r, g_f, gamma=0.0)
    assert coef == pytest.approx(2.5)
    assert [t.tolist() for t in projected] == [[1.0, -0.5], [0.5]]
    assert sum((p * f).sum() for p, f in zip(projected, g_f)).item() == pytest.approx(0.0)
    step, _ = blur.blur_direction(g_r, g_f, gamma=1.0)  # g_r - 2.5 g_f + g_f
    assert [t.tolist() for t in step] == [[1.0, 0.5], [1.5]]
    zero, coef = blur.blur_direction(g_r, [torch.zeros(2), torch.zeros(1)], gamma=1.0)
    assert coef == 0.0 and [t.tolist() for t in zero] == [[1.0, 2.0], [3.0]]


def test_blur_hooks_keep_the_two_gradients_apart_and_combine_them_at_the_step():
    m = method("blur", gamma=1.0)
    w = torch.nn.Parameter(torch.tensor([0.5, -1.0]))
    params = {"w": w}
    for _ in range(2):  # two micro-batches: forget = 2 * (w . [0, 1]), retain = 2 * (w . [1, 2])
        m.backward(
            {"forget": (w * torch.tensor([0.0, 1.0])).sum(), "retain": (w * torch.tensor([1.0, 2.0])).sum()}, params
        )
    stats = m.transform_gradients(params)
    g_r, g_f = torch.tensor([2.0, 4.0]), torch.tensor([0.0, 2.0])
    expected = g_r - (g_r @ g_f) / (g_f @ g_f) * g_f + g_f
    assert torch.allclose(w.grad, expected) and stats["blur_projection"] == pytest.approx(2.0)


def test_blur_defaults_are_the_releases():
    spec = METHODS.get("blur")
    assert spec.defaults()["gamma"] == 1.0 and spec.defaults()["beta"] == 0.15
    assert spec.needs_retain and spec.reference_outputs == ("logits",)


# ---- quantization-aware unlearning --------------------------------------------------------------


@pytest.mark.parametrize("bits,group", [(4, 4), (8, None), (3, 8)])
def test_ste_forward_is_rtn_exactly_and_its_gradient_the_identity(bits, group):
    from qunlearn.quantize.rtn import rtn_fake_quant

    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(bits), requires_grad=True)
    q = quant_aware.ste_rtn(w, bits, group)
    assert torch.equal(q, rtn_fake_quant(w.detach(), bits, group))
    v = torch.randn(4, 8)
    (q * v).sum().backward()
    assert torch.equal(w.grad, v)  # absmax RTN clips nothing: straight through everywhere


def test_ste_clip_mask_is_the_clip_range():
    w = torch.tensor([[1.0, -0.5, 0.2, 4.0]])
    # a scale of 0.1 at 4 bits (qmax 7): the range is |w| <= 0.7
    mask = quant_aware.clip_mask(w, torch.tensor([[0.1]]), 4, None)
    assert mask.tolist() == [[False, True, True, False]]


def test_quantized_view_runs_the_model_on_the_rtn_weights_and_leaves_it_alone(micro_model):
    from qunlearn.quantize import target_linears
    from qunlearn.quantize.rtn import snap_linears

    model, tok, _, _ = micro_model
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[1, 5, 9, 12]])
    names = [f"{n}.weight" for n in target_linears(model, False)]
    out = quant_aware.QuantizedView(model, names, 4, 16)(input_ids=ids).logits
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    snapped = copy.deepcopy(model)
    snap_linears(snapped, 4, 16, False)
    assert torch.allclose(out, snapped(input_ids=ids).logits, atol=1e-6)
    assert METHODS.get("npo_gdr_qa").objective == "npo_gdr"


# ---- config errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,settings,key",
    [
        ("rmu", {"steering_coeff": 0}, "unlearn.methods.rmu.steering_coeff"),
        ("rmu", {"layer": -1}, "unlearn.methods.rmu.layer"),
        ("rmu", {"update_layers": []}, "unlearn.methods.rmu.update_layers"),
        ("blur", {"gamma": -1}, "unlearn.methods.blur.gamma"),
        ("blur", {"beta": 0}, "unlearn.methods.blur.beta"),
        ("npo_gdr_qa", {"bits": 9}, "unlearn.methods.npo_gdr_qa.bits"),
        ("ga_gdr_qa", {"group_size": -1}, "unlearn.methods.ga_gdr_qa.group_size"),
        ("rmu_release", {"steering_coeff": 2}, "unknown key"),
    ],
)
def test_bad_settings_name_the_key(name, settings, key):
    with pytest.raises(ConfigError, match=key):
        METHODS.get(name).resolve(settings, f"unlearn.methods.{name}")


# ---- a few steps on a micro model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def micro_model(tmp_path_factory):
    from qunlearn import runtime
    from qunlearn.config import ModelConfig, SyntheticCorpusConfig, TrainConfig
    from qunlearn.data import muse_format
    from qunlearn.data.synthetic import write_corpus
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.models import build_tiny_llama
    from qunlearn.train import train_until_memorised

    d = tmp_path_factory.mktemp("zoo")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    tok = train_tokenizer(forget + retain, 500, d / "tok")
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
    return model, tok, forget, retain


def last_state_sq_norm(model, tok, texts):
    """Mean over real tokens of ||h||^2, h the last hidden state."""
    from qunlearn.batching import collate, encode

    b = collate(encode(tok, texts, 128), tok.pad_token_id)
    with torch.no_grad():
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
    mask = b["attention_mask"].float()
    return ((h.hidden_states[-1].pow(2).sum(-1) * mask).sum() / mask.sum()).item()


@pytest.mark.parametrize(
    "name,alpha,lr,settings",
    [
        ("rmu", 1.0, 1e-3, {"steering_coeff": 20.0}),
        ("rmu_release", 1.0, 1e-3, {}),
        ("blur", 1.0, 1e-3, {}),
        ("npo_gdr_qa", 1.0, 1e-3, {}),
    ],
)
def test_each_method_lowers_its_forget_objective(micro_model, name, alpha, lr, settings):
    from qunlearn import runtime
    from qunlearn.unlearn.loop import unlearn

    model, tok, forget, retain = micro_model
    model = copy.deepcopy(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    runtime.seed_everything(0, 1)
    cfg = UnlearnConfig(method=name, alpha=alpha, lr=lr, epochs=4, batch_size=4, settings=settings)
    before = last_state_sq_norm(model, tok, forget)
    history = unlearn(model, tok, forget, retain, cfg, seed=0, max_length=128, progress=False)
    first, last = history["epochs"][0], history["epochs"][-1]
    if name == "rmu_release":
        # u is redrawn every step, so the logged term is noisy; its expectation over u is
        # E||h - alpha u||^2 = ||h||^2 + alpha^2 (u has mean 0 and norm 1): ||h||^2 must fall
        assert last_state_sq_norm(model, tok, forget) < before
    else:
        assert last["forget"] < first["forget"], history["epochs"]
    assert all(math.isfinite(v) for e in history["epochs"] for v in e.values())
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, start[k])}
    if name == "rmu":  # only the down-projections of layers l-2..l (l = round(7/32 * 2) = 0)
        assert moved == {"model.layers.0.mlp.down_proj.weight"}
    else:
        assert len(moved) > 1


def test_the_rmu_table_takes_the_rmu_family_beside_the_utility_constrained_methods(monkeypatch):
    from qunlearn.config import ReportConfig
    from qunlearn.report import studies

    seen = {}
    monkeypatch.setattr(studies, "study_table", lambda df, ret, arms, vary, schemes: seen.update(arms=arms, s=schemes))
    arm = "unlearn/{}/alpha~selected/lr~3e-05/epochs~40/loss~faithful"
    headline = [("synth", arm.format(m)) for m in ("rmu", "npo_gdr", "blur", "rmu_release")]
    cfg = ReportConfig(utility_constrained=["npo_gdr"])
    studies.rmu_table(None, None, cfg, headline)
    assert [a for _, a in seen["arms"]] == [arm.format(m) for m in ("rmu", "npo_gdr", "rmu_release")]
    assert seen["s"] == ["fp32", "rtn4"]
    assert studies.rmu_table(None, None, cfg, headline[1:3]).empty
