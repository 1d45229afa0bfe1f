"""Every quantizer backend on a tiny random Llama (CPU, seconds): it quantizes, the result runs
forward, the stored codes obey the library's documented error bounds, GPTQ/AWQ are bit-identical
across runs, and evaluation sees the deployed weights."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from qunlearn import runtime
from qunlearn.config import ConfigError, ModelConfig, SyntheticCorpusConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.models import build_tiny_llama, load_model, save_model
from qunlearn.plugins import Scheme
from qunlearn.quantize import implementation, load_quantized, quantize_model, target_linears
from qunlearn.quantize.rtn import rtn_codes
from qunlearn.registries import QUANTIZERS

# in_features 128 / 256: a multiple of GPTQ's and AWQ's group size 128
TINY = ModelConfig(hidden_size=128, num_layers=1, num_heads=2, intermediate_size=256, max_length=128)


def scheme(**kw) -> Scheme:
    return Scheme.from_config("q", kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    data = d / "data"
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), data)
    texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(data, "raw", s)]
    tok = train_tokenizer(texts, 400, data / "tokenizer")
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(TINY, tok, 0)
    save_model(model, tok, d / "model")
    # a slightly moved copy: the "unlearned" model
    with torch.no_grad():
        for lin in target_linears(model, False).values():
            lin.weight.add_(1e-3 * torch.randn_like(lin.weight))
    save_model(model, tok, d / "moved")
    ids = tok(texts[0], return_tensors="pt")["input_ids"][:, :32]
    return {"dir": d, "data": data, "tok": tok, "ids": ids}


def logits(model, ids):
    with torch.no_grad():
        return model(ids.to(next(model.parameters()).device)).logits.float()


def test_every_quantizer_declares_settings_and_an_implementation_that_loads():
    assert QUANTIZERS.names() == ["none", "cast", "rtn", "bnb_int8", "bnb_fp4", "bnb_nf4", "gptq", "awq"]
    for spec in QUANTIZERS.specs():
        assert dataclasses.is_dataclass(spec.settings), spec.name
        impl = spec.load()
        assert isinstance(impl, type) and hasattr(impl(), "calibrate" if spec.calibrated else "apply"), spec.name
    assert [s.name for s in QUANTIZERS.specs() if s.calibrated] == ["gptq", "awq"]


@pytest.mark.parametrize(
    "raw,needle",
    [
        (
            {"quantizer": "rtn", "bits": 4, "dampening": 0.1},
            r"q: unknown key\(s\) 'dampening'; allowed: bits, group_size",
        ),
        ({"quantizer": "rtn"}, r"q\.bits: quantizer 'rtn' needs bits"),
        ({"quantizer": "rtn", "bits": 9}, r"q\.bits: must be in 2\.\.8, got 9"),
        ({"quantizer": "rtn", "bits": 4, "group_size": -1}, r"q\.group_size: must be >= 0"),
        ({"quantizer": "rtn", "bits": 4, "include_lm_head": "yes"}, r"q\.include_lm_head: expected true/false"),
        ({"quantizer": "cast", "dtype": "fp8"}, r"q\.dtype: 'fp8' unknown"),
        ({"quantizer": "bnb_int8", "threshold": "high"}, r"q\.threshold: expected a number"),
        ({"quantizer": "bnb_fp4", "blocksize": 128}, r"q\.blocksize: only 64"),
        ({"quantizer": "bnb_nf4", "double_quant": 1}, r"q\.double_quant: expected true/false"),
        ({"quantizer": "gptq", "bits": 1}, r"q\.bits: must be in 2\.\.8"),
        ({"quantizer": "gptq", "dampening": 1.0}, r"q\.dampening: must be in \[0, 1\)"),
        ({"quantizer": "gptq", "actorder": "random"}, r"q\.actorder: 'random' unknown"),
        ({"quantizer": "gptq", "calibration_split": "forget"}, r"q\.calibration_split: 'forget' not allowed"),
        ({"quantizer": "awq", "calibration_samples": 0}, r"q\.calibration_samples: must be >= 1"),
        ({"quantizer": "awq", "group_size": -8}, r"q\.group_size: must be >= 0"),
        ({"quantizer": "awq", "dampening": 0.1}, r"q: unknown key\(s\) 'dampening'"),
        ({"quantizer": "gguf"}, r"q\.quantizer: unknown quantizer 'gguf'"),
    ],
)
def test_scheme_config_errors_name_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        scheme(**raw)


def test_resolved_scheme_is_the_quantizer_and_exactly_its_settings():
    assert scheme(quantizer="rtn", bits=4, group_size=128).resolved() == {
        "quantizer": "rtn",
        "bits": 4,
        "group_size": 128,
        "include_lm_head": False,
    }
    assert scheme(quantizer="none").resolved() == {"quantizer": "none"}
    assert scheme(quantizer="cast").resolved() == {"quantizer": "cast", "dtype": "bf16"}
    assert scheme(quantizer="bnb_int8").resolved() == {"quantizer": "bnb_int8", "threshold": 6.0}
    assert scheme(quantizer="bnb_nf4").resolved() == {"quantizer": "bnb_nf4", "blocksize": 64, "double_quant": False}
    calibration = {
        "calibration_split": "retain2",
        "calibration_samples": 32,
        "calibration_seed": 0,
        "calibration_max_length": 256,
    }
    # key order too: it is the order of a job's params and meta.json
    assert list(scheme(quantizer="gptq").resolved().items()) == list(
        {
            "quantizer": "gptq",
            "bits": 4,
            "group_size": 128,
            "symmetric": True,
            "dampening": 0.01,
            "actorder": None,
            "block_size": 128,
            **calibration,
        }.items()
    )
    assert list(scheme(quantizer="awq").resolved().items()) == list(
        {
            "quantizer": "awq",
            "bits": 4,
            "group_size": 128,
            "symmetric": False,
            "duo_scaling": True,
            "n_grid": 20,
            **calibration,
        }.items()
    )
    g = scheme(quantizer="gptq", bits=3, actorder="group")
    assert Scheme.from_resolved("q", g.resolved()) == g
    assert [
        scheme(quantizer=q, **kw).nominal_bits
        for q, kw in [
            ("none", {}),
            ("cast", {}),
            ("bnb_int8", {}),
            ("bnb_fp4", {}),
            ("bnb_nf4", {}),
            ("rtn", {"bits": 3}),
            ("gptq", {}),
            ("awq", {"bits": 8}),
        ]
    ] == [32, 16, 8, 4, 4, 3, 4, 8]


@pytest.mark.parametrize(
    "kw",
    [
        {"quantizer": "none"},
        {"quantizer": "cast", "dtype": "fp16"},
        {"quantizer": "cast", "dtype": "bf16"},
        {"quantizer": "rtn", "bits": 2, "group_size": 32},
        {"quantizer": "rtn", "bits": 3, "group_size": None},
        {"quantizer": "rtn", "bits": 8, "group_size": 128},
        {"quantizer": "bnb_int8"},
        {"quantizer": "bnb_fp4"},
        {"quantizer": "bnb_nf4", "double_quant": True},
    ],
)
def test_on_the_fly_backends_quantize_and_run_forward(tiny, kw):
    s = scheme(**kw)
    ref = load_model(tiny["dir"] / "model", device=torch.device("cpu"))
    model, info = load_quantized(tiny["dir"] / "model", s)
    out = logits(model, tiny["ids"])
    assert torch.isfinite(out).all() and out.shape == logits(ref, tiny["ids"]).shape
    assert info["quantizer"] == kw["quantizer"]
    if kw["quantizer"] != "none":
        assert not torch.equal(out, logits(ref, tiny["ids"]))  # quantization changed the function
        # q, k, v, o, gate, up, down (lm_head kept in full precision); a cast casts every layer
        assert info["n_layers"] == (8 if kw["quantizer"] == "cast" else 7)


def _weights(tiny):
    model = load_model(tiny["dir"] / "model", device=torch.device("cpu"))
    return {n: m.weight.detach().clone() for n, m in target_linears(model, False).items()}


def test_bnb_int8_codes_obey_the_absmax_bound_and_match_the_loaded_module(tiny):
    import bitsandbytes as bnb

    s = scheme(quantizer="bnb_int8")
    q = implementation(s)
    loaded, _ = load_quantized(tiny["dir"] / "model", s)
    mods = {n: m for n, m in loaded.named_modules() if isinstance(m, bnb.nn.Linear8bitLt)}
    for name, w in _weights(tiny).items():
        c = q.codes(w, s)
        w16 = w.half().float()  # Int8Params quantizes the fp16 weight
        scale = c["scale"].float().unsqueeze(1) / 127.0
        assert torch.equal(c["scale"].float(), w16.abs().amax(dim=1))
        assert ((w16 - c["codes"].float() * scale).abs() <= scale / 2 + 1e-6).all()
        assert torch.equal(mods[name].weight.data, c["codes"])  # what bnb itself stored


@pytest.mark.parametrize("quantizer", ["bnb_fp4", "bnb_nf4"])
def test_bnb_4bit_codes_lie_on_the_codebook_within_half_a_gap(tiny, quantizer):
    import bitsandbytes as bnb

    from qunlearn.quantize.bnb import quantize_4bit

    s = scheme(quantizer=quantizer)
    q = implementation(s)
    loaded, _ = load_quantized(tiny["dir"] / "model", s)
    mods = {n: m for n, m in loaded.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    for name, w in _weights(tiny).items():
        c = q.codes(w, s)
        _, state = quantize_4bit(w, quantizer[4:], 64, False)
        book = state.code.float()
        gap = (book.sort().values.diff()).max()
        absmax = c["absmax"].repeat_interleave(64)[: w.numel()].reshape(w.shape)
        deq = book[c["codes"].long()] * absmax
        assert torch.allclose(
            deq, bnb.functional.dequantize_4bit(*quantize_4bit(w, quantizer[4:], 64, False)), atol=1e-6
        )
        assert ((w - deq).abs() <= absmax * gap / 2 + 1e-6).all()
        packed, _ = quantize_4bit(w, quantizer[4:], 64, False)
        assert torch.equal(mods[name].weight.data.flatten(), packed.flatten())  # what bnb itself stored


def test_bnb_4bit_module_computes_with_the_dequantized_weights(tiny):
    s = scheme(quantizer="bnb_nf4")
    loaded, _ = load_quantized(tiny["dir"] / "model", s)
    sim = load_model(tiny["dir"] / "model", device=torch.device("cpu"))
    quantize_model(sim, s)
    assert torch.allclose(logits(loaded, tiny["ids"]), logits(sim, tiny["ids"]), atol=1e-4)


def test_rtn_codes_are_the_rtn_functions(tiny):
    s = scheme(quantizer="rtn", bits=4, group_size=128)
    for w in _weights(tiny).values():
        assert torch.equal(implementation(s).codes(w, s)["codes"], rtn_codes(w, 4, 128)[0])


@pytest.mark.parametrize("quantizer", ["gptq", "awq"])
def test_calibrated_schemes_are_bit_identical_across_runs_and_deploy_their_codes(tiny, tmp_path, quantizer):
    from qunlearn.stages import quantize_checkpoint

    s = scheme(quantizer=quantizer, calibration_samples=8, calibration_max_length=64).resolved()
    outs = [tmp_path / f"run{i}" for i in (1, 2)]
    metas = [quantize_checkpoint(tiny["dir"] / "model", tiny["data"], o, s, seed=0, threads=1) for o in outs]
    for f in ("model.safetensors", "quant_codes.safetensors"):
        a, b = load_file(str(outs[0] / f)), load_file(str(outs[1] / f))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    meta = json.loads((outs[0] / "meta.json").read_text())
    assert meta["config"]["scheme"] == s and meta["quantization"]["calibration"]["split"] == "raw/retain2"
    assert meta["quantization"]["calibration"]["n_records"] == 8
    assert metas[0]["quantization"]["calibration"]["sha256"] == metas[1]["quantization"]["calibration"]["sha256"]
    weights, codes = load_file(str(outs[0] / "model.safetensors")), load_file(str(outs[0] / "quant_codes.safetensors"))
    name = "model.layers.0.mlp.down_proj"
    q, scale, zp = codes[f"{name}.codes"].float(), codes[f"{name}.scale"], codes[f"{name}.zero_point"].float()
    assert q.min() >= -8 and q.max() <= 7 and q.unique().numel() > 8  # 4-bit signed codes, used
    deq = ((q.reshape(q.shape[0], -1, 128) - zp.unsqueeze(-1)) * scale.unsqueeze(-1)).reshape(q.shape)
    assert torch.allclose(weights[f"{name}.weight"], deq, atol=1e-6)  # the checkpoint holds dequant(codes)
    model = load_model(outs[0], device=torch.device("cpu"))
    assert torch.isfinite(logits(model, tiny["ids"])).all()
    if quantizer == "gptq":  # symmetric: zero points are 0
        assert (zp == 0).all()


def test_calibration_texts_are_a_seeded_subset_of_the_split():
    from qunlearn.quantize.llmc import calibration_texts

    texts = [f"t{i}" for i in range(20)]
    a = calibration_texts(texts, 5, 0)
    assert a == calibration_texts(texts, 5, 0) and len(set(a)) == 5 and set(a) <= set(texts)
    assert a != calibration_texts(texts, 5, 1)
    assert sorted(calibration_texts(texts, 50, 0)) == sorted(texts)


def test_the_experiment_routes_calibrated_schemes_through_the_quantize_rule(default_config):
    from qunlearn.experiment import Experiment

    exp = Experiment(default_config)
    assert exp.schemes["gptq"].calibrated and exp.schemes["awq"].calibrated
    assert not exp.schemes["bnb_nf4"].calibrated and not exp.schemes["rtn4"].calibrated
    assert exp.calibrated_scheme_names() == ["gptq", "awq"]
    assert exp.eval_model_input("synth", "target", "gptq") == "results/synth/quant/target/gptq"
    assert exp.eval_model_input("synth", "target", "rtn4") == "results/synth/models/target"
    plain = exp.dataset_schemes("synth_plain")
    assert plain == default_config["datasets"]["synth_plain"]["schemes"]
    assert exp.dataset_schemes("synth") == list(default_config["quantize"]["schemes"])
