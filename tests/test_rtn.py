import pytest
import torch

from qunlearn.config import ConfigError
from qunlearn.plugins import Scheme
from qunlearn.quantize import quantize_model
from qunlearn.quantize.rtn import rtn_codes, rtn_dequantize, rtn_fake_quant, snap_linears


def test_hand_checked_codes_per_channel():
    w = torch.tensor([[0.7, -0.36, 0.1, 0.0], [-2.0, 1.1, 0.5, 0.26]])
    codes, scale = rtn_codes(w, bits=4)
    # qmax = 7: row 0 Delta = 0.1, row 1 Delta = 2/7
    assert scale.flatten().tolist() == pytest.approx([0.1, 2 / 7])
    assert codes.tolist() == [[7, -4, 1, 0], [-7, 4, 2, 1]]  # no exact ties: -3.6 -> -4, 3.85 -> 4
    assert rtn_dequantize(codes, scale).tolist()[0] == pytest.approx([0.7, -0.4, 0.1, 0.0])


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 4, 6])
def test_codes_in_range_error_bound_and_idempotence(bits, group_size):
    w = torch.randn(5, 12, generator=torch.Generator().manual_seed(bits))
    codes, scale = rtn_codes(w, bits, group_size)
    qmax = 2 ** (bits - 1) - 1
    assert codes.abs().max().item() <= qmax
    assert codes.abs().max().item() == qmax  # the absmax of each group hits the end of the range
    q = rtn_fake_quant(w, bits, group_size)
    # |w - Q(w)| <= Delta / 2 for every weight, with Delta of the weight's own group
    g = 12 if group_size is None else group_size
    n_groups = -(-12 // g)
    delta = scale.repeat_interleave(g, dim=1)[:, :12]
    assert scale.shape == (5, n_groups)
    assert ((w - q).abs() <= delta / 2 + 1e-7).all()
    assert torch.equal(rtn_fake_quant(q, bits, group_size), q)  # idempotent


def test_groups_have_their_own_scale():
    w = torch.tensor([[1.0, 0.45, 100.0, 40.0]])
    q = rtn_fake_quant(w, 4, group_size=2)
    assert q[0].tolist() == pytest.approx([1.0, 3 / 7, 100.0, 300 / 7])  # 3.15 -> 3, 2.8 -> 3
    q_channel = rtn_fake_quant(w, 4)
    assert q_channel[0, :2].tolist() == [0.0, 0.0]  # per channel, the small weights vanish


def test_zero_rows_stay_zero():
    assert torch.equal(rtn_fake_quant(torch.zeros(2, 4), 4), torch.zeros(2, 4))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(10, 8)
        self.block = torch.nn.Linear(8, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.lm_head = torch.nn.Linear(8, 10, bias=False)


def test_snap_touches_linears_but_not_embeddings_norms_or_lm_head():
    m = _Tiny()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    names = snap_linears(m, 4, None, include_lm_head=False)
    assert names == ["block"]
    assert not torch.equal(m.block.weight, before["block.weight"])
    for k in ("embed.weight", "norm.weight", "lm_head.weight", "block.bias"):
        assert torch.equal(m.state_dict()[k], before[k]), k
    assert snap_linears(m, 4, None, include_lm_head=True) == ["block", "lm_head"]


def test_schemes_quantize_in_place_and_baseline_does_nothing():
    m = _Tiny()
    w = m.block.weight.clone()
    assert quantize_model(m, Scheme.from_config("fp32", {"quantizer": "none"}))["n_layers"] == 0
    assert torch.equal(m.block.weight, w)
    info = quantize_model(m, Scheme.from_config("rtn8", {"quantizer": "rtn", "bits": 8, "group_size": 4}))
    assert info["n_layers"] == 1 and info["bits"] == 8
    assert torch.equal(m.block.weight, rtn_fake_quant(w, 8, 4))
    with pytest.raises(ConfigError, match=r"quantize\.schemes\.q\.quantizer: unknown quantizer 'gguf'"):
        Scheme.from_config("q", {"quantizer": "gguf"})
