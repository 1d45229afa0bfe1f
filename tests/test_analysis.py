"""The weight-change analysis: zero for identical models, exact on a hand-built example."""

import pytest
import torch
from safetensors.torch import save_file

from qunlearn.analysis import linear_weights, summarise, weight_change
from qunlearn.plugins import Scheme
from qunlearn.quantize.rtn import rtn_fake_quant


def rtn4():
    return Scheme.from_config("rtn4", {"quantizer": "rtn", "bits": 4, "group_size": None})


def write(d, weights):
    d.mkdir()
    save_file(
        {
            **{f"{k}.weight": v.contiguous() for k, v in weights.items()},
            "model.embed_tokens.weight": torch.ones(3, 4),
            "lm_head.weight": torch.ones(3, 4),
            "model.layers.0.input_layernorm.weight": torch.ones(4),
        },
        str(d / "model.safetensors"),
    )
    return d


def test_linear_weights_skip_embeddings_norms_and_lm_head():
    state = {
        "model.embed_tokens.weight": torch.ones(3, 4),
        "lm_head.weight": torch.ones(3, 4),
        "model.norm.weight": torch.ones(4),
        "model.layers.0.mlp.up_proj.weight": torch.ones(2, 4),
    }
    assert list(linear_weights(state)) == ["model.layers.0.mlp.up_proj"]


@pytest.mark.parametrize(
    "kw",
    [
        {"quantizer": "rtn", "bits": 4, "group_size": None},
        {"quantizer": "none"},
        {"quantizer": "cast", "dtype": "bf16"},
        {"quantizer": "bnb_nf4"},
    ],
)
def test_identical_models_change_nothing(tmp_path, kw):
    w = {"model.layers.0.self_attn.q_proj": torch.randn(8, 64, generator=torch.Generator().manual_seed(0))}
    a, b = write(tmp_path / "a", w), write(tmp_path / "b", w)
    r = weight_change(a, b, Scheme.from_config("s", kw))
    o = r["overall"]
    assert o["frac_codes_changed"] == 0 and o["frac_dequant_changed"] == 0 and o["frac_fp_changed"] == 0
    assert o["cosine"] == pytest.approx(1.0) and o["rel_l2"] == 0 and o["n_weights"] == 8 * 64


def test_hand_built_example(tmp_path):
    # 4-bit per channel: qmax 7, row max 0.7 -> Delta 0.1 (the max stays, so the scale stays)
    t = torch.tensor([[0.7, 0.10, 0.00, -0.36], [1.4, 0.2, 0.0, 0.0]])
    u = torch.tensor([[0.7, 0.14, 0.06, -0.36], [1.4, 0.2, 0.0, 0.0]])
    #   codes row 0: [7, 1, 0, -4] -> [7, 1, 1, -4]: 0.14 stays in bin 1, 0.06 crosses to bin 1
    wt = {"model.layers.0.mlp.up_proj": t, "model.layers.1.self_attn.q_proj": t.clone()}
    wu = {"model.layers.0.mlp.up_proj": u, "model.layers.1.self_attn.q_proj": t.clone()}
    r = weight_change(write(tmp_path / "t", wt), write(tmp_path / "u", wu), rtn4())
    assert r["overall"]["frac_codes_changed"] == pytest.approx(1 / 16)
    assert r["overall"]["frac_fp_changed"] == pytest.approx(2 / 16)
    assert r["by_module"]["up_proj"]["frac_codes_changed"] == pytest.approx(1 / 8)
    assert r["by_module"]["q_proj"]["frac_codes_changed"] == 0
    assert r["by_layer"]["0"]["frac_codes_changed"] == pytest.approx(1 / 8) and r["by_layer"]["1"]["n_weights"] == 8
    d = (u - t).flatten()
    rel = float(d.norm() / torch.cat([t.flatten(), t.flatten()]).norm())
    assert r["overall"]["rel_l2"] == pytest.approx(rel)
    tt, uu = torch.cat([t, t]).flatten(), torch.cat([u, t]).flatten()
    assert r["overall"]["cosine"] == pytest.approx(float(tt @ uu / (tt.norm() * uu.norm())))
    qd = rtn_fake_quant(u, 4) - rtn_fake_quant(t, 4)
    assert r["overall"]["frac_dequant_changed"] == pytest.approx(1 / 16) and qd.abs().max() == pytest.approx(0.1)


def test_summarise_rejects_mismatched_codes():
    z = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="code shapes differ"):
        summarise({"x": (z, z, torch.zeros(4), torch.zeros(3), z, z)})
