"""The recovery attacks' implementations on a micro Llama (seconds): pruning, weight noise,
interpolation and the fine-tuning attacks, each checked against an independent computation."""

import copy
import math

import pytest
import torch

import qunlearn.batching
from qunlearn import runtime, stages
from qunlearn.attacks.base import AttackContext
from qunlearn.attacks.finetune import lr_factor
from qunlearn.attacks.noise import group_steps
from qunlearn.attacks.prune import unstructured_mask
from qunlearn.batching import collate, encode_documents
from qunlearn.config import ModelConfig
from qunlearn.data import entities, muse_format
from qunlearn.data.tokenizer import load_tokenizer
from qunlearn.models import build_tiny_llama
from qunlearn.registries import ATTACKS

MICRO = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=64)
BLOCK_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small synthetic dataset made by the data stage itself (splits, manifest, tokenizer)."""
    d = tmp_path_factory.mktemp("data") / "data"
    synthetic = {"n_people": 20, "forget_fraction": 0.2, "n_holdout_people": 4, "n_icl": 1, "qa_repeats": 1}
    stages.prepare_data({"synthetic": {**synthetic, "letter_words": 4}, "tokenizer": {"vocab_size": 400}}, d)
    return d, load_tokenizer(d / "tokenizer")


def micro(tok, seed=0, cfg=MICRO):
    runtime.seed_everything(seed, 1)
    return build_tiny_llama(cfg, tok, seed).eval()


def attack(name, point, **settings):
    spec = ATTACKS[name]
    return spec.load()(spec, spec.resolve(settings, f"attacks.{name}"), point)


def context(data, seed=0, target=None):
    d, tok = data
    return AttackContext(data_dir=d, tokenizer=tok, seed=seed, max_length=MICRO.max_length, target=target)


def block_linears(model):
    return {n: m for n, m in model.named_modules() if n.split(".")[-1] in BLOCK_LINEARS}


def untouched(before: dict, model) -> list[str]:
    """Names of the tensors outside the block Linear layers that changed."""
    after = model.state_dict()
    keep = [k for k in before if not any(f".{p}." in k for p in BLOCK_LINEARS)]
    assert any("embed_tokens" in k for k in keep) and any("norm" in k for k in keep)
    return [k for k in keep if not torch.equal(before[k], after[k])]


def manifest_sha(d, split):
    return runtime.read_json(d / "meta.json")[muse_format.MANIFEST_KEY][f"raw/{split}"]["sha256"]


# --- pruning -----------------------------------------------------------------------------------


def lowest(values: list[float], k: int) -> set[int]:
    """The k smallest by (value, position): ties go to the earlier position."""
    return set(sorted(range(len(values)), key=lambda i: (values[i], i))[:k])


@pytest.mark.parametrize("sparsity", ["0.3", "0.5"])
def test_magnitude_prunes_exactly_the_smallest_of_each_matrix(data, sparsity):
    model = micro(data[1])
    before = copy.deepcopy(model.state_dict())
    stats = attack("prune", {"criterion": "magnitude", "sparsity": sparsity}).apply(model, context(data))
    assert untouched(before, model) == []
    for name, m in block_linears(model).items():
        w0 = before[f"{name}.weight"].flatten().tolist()
        k = round(float(sparsity) * len(w0))
        expected = lowest([abs(x) for x in w0], k)
        w = m.weight.flatten().tolist()
        assert {i for i, x in enumerate(w) if x == 0} == expected, name
        assert all(w[i] == w0[i] for i in range(len(w)) if i not in expected)
        assert stats["pruned_per_layer"][name] == k
    assert set(stats["achieved_sparsity_by_type"]) == set(BLOCK_LINEARS)
    assert stats["achieved_sparsity"] == pytest.approx(float(sparsity), abs=1e-3)
    assert stats["n_layers"] == len(BLOCK_LINEARS) * MICRO.num_layers


def test_ties_are_broken_by_position():
    score = torch.tensor([[2.0, 1.0, 1.0, 1.0, 1.0, 3.0]])
    assert unstructured_mask(score, 0.5, per_row=True).tolist() == [[False, True, True, True, False, False]]
    assert unstructured_mask(score.reshape(2, 3), 0.5, per_row=False).flatten().tolist() == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]


def calibration_norms(model, tok, texts, block) -> dict[str, torch.Tensor]:
    """||X_j||_2 over the calibration tokens of each Linear of one block, from stored inputs."""
    inputs = {}
    handles = [
        m.register_forward_hook(
            lambda mod, inp, out, n=n: inputs.setdefault(n, []).append(inp[0].reshape(-1, inp[0].shape[-1]))
        )
        for n, m in block_linears(block).items()
    ]
    with torch.no_grad():
        for t in texts:
            model(input_ids=torch.tensor([tok(t)["input_ids"][: MICRO.max_length]]))
    for h in handles:
        h.remove()
    return {n: torch.linalg.vector_norm(torch.cat(xs).double(), dim=0).float() for n, xs in inputs.items()}


def wanda_reference(model, tok, texts, sparsity):
    """Wanda's reference procedure: block by block, score |W| * ||X_j|| with the earlier blocks
    already pruned, zero the k lowest of each row (or 2 of every 4)."""
    for block in model.model.layers:
        norms = calibration_norms(model, tok, texts, block)
        for n, m in block_linears(block).items():
            score = (m.weight.abs() * norms[n].unsqueeze(0)).tolist()
            w = m.weight.detach()
            for r, row in enumerate(score):
                if sparsity == "2of4":
                    zero = {g + i for g in range(0, len(row), 4) for i in lowest(row[g : g + 4], 2)}
                else:
                    zero = lowest(row, round(float(sparsity) * len(row)))
                for j in zero:
                    w[r, j] = 0.0


@pytest.mark.parametrize("sparsity", ["0.5", "2of4"])
def test_wanda_matches_the_reference_procedure(data, sparsity):
    d, tok = data
    model = micro(tok)
    reference = copy.deepcopy(model)
    ctx = context(data)
    settings = {"criteria": ["wanda"], "calibration_samples": 5, "calibration_seed": 3}
    attack("prune", {"criterion": "wanda", "sparsity": sparsity}, **settings).apply(model, ctx)
    texts = muse_format.read_texts(d, "raw", "retain2")
    chosen = muse_format.seeded_subset(len(texts), 5, 3)
    wanda_reference(reference, tok, [texts[i] for i in chosen], sparsity)
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), n
    # the calibration read: the declared split only, its manifest hash, the records drawn
    assert set(ctx.reads) == {"raw/retain2"}
    read = ctx.reads["raw/retain2"]
    assert read["file_sha256"] == manifest_sha(d, "retain2") and read["records_used"] == chosen
    assert read["texts_sha256"] == muse_format.texts_sha256([texts[i] for i in chosen])


def test_wanda_and_magnitude_differ_where_only_activations_tell_weights_apart(data):
    """All-equal |W| in one layer: magnitude falls back on position, Wanda prunes the inputs with
    the smallest activation norms."""
    d, tok = data
    model = micro(tok, cfg=ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=64))
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.fill_(0.01)
    by_magnitude = copy.deepcopy(model)
    texts = muse_format.read_texts(d, "raw", "retain2")
    chosen = [texts[i] for i in muse_format.seeded_subset(len(texts), 4, 0)]
    norms = calibration_norms(model, tok, chosen, model.model.layers[0])["self_attn.q_proj"]
    attack("prune", {"criterion": "magnitude", "sparsity": "0.25"}).apply(by_magnitude, context(data))
    attack("prune", {"criterion": "wanda", "sparsity": "0.25"}, calibration_samples=4).apply(model, context(data))
    quietest = lowest(norms.tolist(), 8)  # 0.25 of 32 inputs
    for row in model.model.layers[0].self_attn.q_proj.weight:
        assert {j for j, x in enumerate(row.tolist()) if x == 0} == quietest
    magnitude_zeros = (by_magnitude.model.layers[0].self_attn.q_proj.weight == 0).flatten().nonzero().flatten()
    assert magnitude_zeros.tolist() == list(range(8 * 32))  # ties by position: the first 8 rows
    assert quietest != set(range(8))


@pytest.mark.parametrize("criterion", ["magnitude", "wanda"])
def test_two_of_four_zeroes_the_two_lowest_of_every_group(data, criterion):
    model = micro(data[1])
    before = copy.deepcopy(model.state_dict())
    stats = attack("prune", {"criterion": criterion, "sparsity": "2of4"}, calibration_samples=3).apply(
        model, context(data)
    )
    for name, m in block_linears(model).items():
        w0 = before[f"{name}.weight"].reshape(m.out_features, -1, 4)
        zero = (m.weight == 0).reshape(m.out_features, -1, 4)
        assert (zero.sum(-1) >= 2).all(), name
        if criterion == "magnitude":  # pruned never outscore kept within a group
            pruned_max = torch.where(zero, w0.abs(), -1.0).amax(-1)
            kept_min = torch.where(~zero, w0.abs(), math.inf).amin(-1)
            assert (pruned_max <= kept_min).all(), name
        assert stats["pruned_per_layer"][name] == m.weight.numel() // 2
    assert stats["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)


# --- noise -------------------------------------------------------------------------------------


class OneLinear(torch.nn.Module):
    def __init__(self, out_f, in_f):
        super().__init__()
        self.proj = torch.nn.Linear(in_f, out_f, bias=False)


def test_noise_sigma_is_c_times_the_rtn_step(data):
    torch.manual_seed(0)
    model = OneLinear(256, 1024)
    with torch.no_grad():
        model.proj.weight[:, :128] = 0.0  # an all-zero group in every row
    w0 = model.proj.weight.detach().clone()
    stats = attack("noise", {"c": "0.5"}, bits=4, group_size=128).apply(model, context(data))
    step = group_steps(w0, 4, 128)
    assert (step[:, :128] == 0).all() and (step[:, 128:] > 0).all()
    assert torch.equal(model.proj.weight[:, :128], w0[:, :128])  # no step, no noise
    ratio = ((model.proj.weight - w0)[:, 128:] / step[:, 128:]).flatten()
    assert ratio.std().item() == pytest.approx(0.5, rel=0.01) and abs(ratio.mean().item()) < 0.005
    assert stats["mean_abs_noise_over_step"] == pytest.approx(0.5 * math.sqrt(2 / math.pi), rel=0.01)
    assert stats["share_without_noise"] == pytest.approx(1 / 8)
    # the step is rtn_codes' max|w| / 7 per (row, group)
    assert step[3, 200].item() == pytest.approx(w0[3, 128:256].abs().max().item() / 7)


def test_noise_is_seeded_and_only_on_block_linears(data):
    tok = data[1]
    runs = []
    for job_seed in (0, 0, 1):
        model = micro(tok)
        before = copy.deepcopy(model.state_dict())
        attack("noise", {"c": "0.25"}, group_size=32).apply(model, context(data, seed=job_seed))
        assert untouched(before, model) == []
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["model.layers.0.mlp.up_proj.weight"], runs[2]["model.layers.0.mlp.up_proj.weight"])


# --- interpolation -----------------------------------------------------------------------------


def test_interpolation_endpoints_are_the_inputs_bit_for_bit_and_the_midpoint_the_mean(data):
    tok = data[1]
    unlearned, target = micro(tok, 0), micro(tok, 1)
    with torch.no_grad():  # signed zeros: torch.lerp alone would turn -0.0 into +0.0 at an endpoint
        unlearned.model.layers[0].mlp.up_proj.weight[0, :2] = torch.tensor([-0.0, 1.0])
        target.model.layers[0].mlp.up_proj.weight[0, :2] = torch.tensor([1.0, -0.0])
    theta_u = copy.deepcopy(unlearned.state_dict())
    theta_t = target.state_dict()
    for lam, expected in (("0", theta_u), ("1", theta_t)):
        model = copy.deepcopy(unlearned)
        attack("interpolate", {"lambda": lam}).apply(model, context(data, target=target))
        for k, v in model.state_dict().items():
            assert torch.equal(v, expected[k]) and torch.equal(torch.signbit(v), torch.signbit(expected[k])), k
    model = copy.deepcopy(unlearned)
    stats = attack("interpolate", {"lambda": "0.5"}).apply(model, context(data, target=target))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, (theta_u[k] + theta_t[k]) / 2, rtol=0, atol=1e-6)
    assert stats["n_tensors_interpolated"] == len(list(unlearned.parameters())) + len(
        [b for b in unlearned.buffers() if b.is_floating_point()]
    )


def test_interpolation_refuses_another_architecture_naming_the_tensor(data):
    tok = data[1]
    wider = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=128, max_length=64)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.(gate|up|down)_proj\.weight"):
        attack("interpolate", {"lambda": "0.5"}).apply(micro(tok), context(data, target=micro(tok, 1, wider)))
    deeper = ModelConfig(hidden_size=32, num_layers=3, num_heads=2, intermediate_size=64, max_length=64)
    with pytest.raises(ValueError, match=r"model\.layers\.2\..* exists only in the target"):
        attack("interpolate", {"lambda": "0.5"}).apply(micro(tok), context(data, target=micro(tok, 1, deeper)))


# --- fine-tuning -------------------------------------------------------------------------------

FAST = {"lr": 3e-3, "batch_size": 2}


def mean_loss(model, tok, texts):
    with torch.no_grad():
        return model(**collate(encode_documents(tok, texts, MICRO.max_length), tok.pad_token_id)).loss.item()


def test_lr_schedules():
    cosine = lr_factor("cosine", 0, 10)
    assert cosine(0) == 1.0 and cosine(5) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    warm = lr_factor("constant", 4, 10)
    assert [warm(s) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]


def test_relearn_runs_exactly_its_steps_lowers_its_loss_and_is_deterministic(data, monkeypatch):
    d, tok = data
    read = []
    original = muse_format.read_split
    monkeypatch.setattr(muse_format, "read_split", lambda *a: read.append(a[1:]) or original(*a))
    results = []
    for _ in range(2):
        model = micro(tok)
        forwards = []
        model.register_forward_hook(lambda *a, forwards=forwards: forwards.append(1))
        ctx = context(data, seed=7)
        point = attack("relearn", {"steps": "6"}, fraction=0.5, **FAST)
        texts = point.texts(ctx)
        before = mean_loss(model, tok, texts)
        stats = point.apply(model, ctx)
        assert mean_loss(model, tok, texts) < before - 0.3
        assert len(forwards) == 2 + 6 and stats["steps"] == 6 and len(stats["losses"]) == 6  # 2: mean_loss
        results.append((model.state_dict(), stats, ctx.reads))
    (first, stats, reads), (second, stats2, reads2) = results
    assert all(torch.equal(first[k], second[k]) for k in first) and stats == stats2 and reads == reads2
    # it read the forget split and nothing else; the record: manifest hash, the seeded half
    assert set(read) == {("raw", "forget")} and set(reads) == {"raw/forget"}
    forget = muse_format.read_texts(d, "raw", "forget")
    r = reads["raw/forget"]
    assert r["file_sha256"] == manifest_sha(d, "forget") and r["file_records"] == len(forget)
    assert r["records_used"] == sorted(muse_format.seeded_subset(len(forget), round(len(forget) / 2), 7))
    assert r["texts_sha256"] == muse_format.texts_sha256([forget[i] for i in r["records_used"]])
    assert stats["n_texts"] == len(r["records_used"])


def test_relearn_takes_at_least_one_record_and_the_seed_picks_it(data):
    tok = data[1]
    picks = []
    for seed in (0, 1, 2, 3):
        ctx = context(data, seed=seed)
        attack("relearn", {"steps": "1"}, fraction=0.001, **FAST).apply(micro(tok), ctx)
        picks.append(tuple(ctx.reads["raw/forget"]["records_used"]))
    assert all(len(p) == 1 for p in picks) and len(set(picks)) > 1


def test_benign_finetune_reads_its_retain_split_only(data):
    d, tok = data
    ctx = context(data)
    model = micro(tok)
    before = copy.deepcopy(model.state_dict())
    stats = attack("benign_finetune", {"steps": "2"}, scheduler="constant", **FAST).apply(model, ctx)
    assert set(ctx.reads) == {"raw/retain1"} and ctx.reads["raw/retain1"]["records_used"] == "all"
    assert ctx.reads["raw/retain1"]["file_sha256"] == manifest_sha(d, "retain1")
    assert stats["n_texts"] == len(muse_format.read_texts(d, "raw", "retain1"))
    assert not torch.equal(before["model.embed_tokens.weight"], model.model.embed_tokens.weight)


def test_heldout_relearn_trains_on_half_a_only(data, monkeypatch):
    d, tok = data
    trained = []
    encode = qunlearn.batching.encode
    monkeypatch.setattr(
        qunlearn.batching, "encode", lambda tok, texts, *a: trained.extend(texts) or encode(tok, texts, *a)
    )
    ctx = context(data)
    stats = attack("heldout_relearn", {"steps": "2"}, halves_seed=1, **FAST).apply(micro(tok), ctx)
    a, b = entities.heldout_halves(entities.forget_entities(d), 1)
    assert (stats["A"], stats["B"]) == (a, b) and a and b and not set(a) & set(b)
    records = muse_format.read_split(d, "raw", "forget")
    people = {r["text"]: set(r[muse_format.ENTITIES]) for r in records}
    assert any(len(p) > 1 and p & set(a) and p & set(b) for p in people.values())  # mixed records exist
    assert trained and all(people[t] <= set(a) for t in trained)  # never a text naming a B person
    assert sorted(trained) == sorted(r["text"] for r in records if set(r[muse_format.ENTITIES]) <= set(a))
    read = ctx.reads["raw/forget"]
    assert set(ctx.reads) == {"raw/forget"} and (read["A"], read["B"]) == (a, b)
    assert read["n_used"] == stats["n_texts"] == len(trained) and read["file_sha256"] == manifest_sha(d, "forget")
