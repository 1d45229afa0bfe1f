"""External unlearned models (datasets.<name>.external): a checkpoint and a peft LoRA adapter made
here from the micro target enter the plan as ``external/<name>`` (evaluate at every scheme,
quantize, analysis, the headline tables), the fetch stage copies or merges them (the merged
checkpoint computes what the peft model computes), and every mismatch is an error naming the model."""

import json
import re
import shutil

import pytest
import torch
import yaml
from conftest import ROOT
from test_workflow import snakemake

from qunlearn import paths, runtime
from qunlearn.config import ConfigError, ModelConfig, SyntheticCorpusConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import load_tokenizer, train_tokenizer
from qunlearn.experiment import Experiment
from qunlearn.external import ExternalModelError, fetch_external
from qunlearn.models import build_tiny_llama, load_model, save_model

MICRO = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=128)
SMOKE = ROOT / "configs" / "slurm-smoke.yaml"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """data/ (corpus + tokenizer), the target, a perturbed copy ('unlearned elsewhere') and a LoRA
    adapter on the target with non-zero B (so merging changes the weights)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("external")
    data = root / "data"
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), data)
    texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(data, "raw", s)]
    tok = train_tokenizer(texts, 600, data / "tokenizer")
    target = build_tiny_llama(MICRO, tok, 0)
    save_model(target, tok, root / "target")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_model(target, tok, root / "ckpt")
    base = load_model(root / "target", device=torch.device("cpu"))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    torch.manual_seed(2)
    get_peft_model(base, lora).save_pretrained(str(root / "adapter"))
    return root, tok


def _fetch(root, spec, name="mine", out="out"):
    return fetch_external(spec, "synth", name, root / "target", root / "data", root / out)


def _tensors(model_dir):
    from safetensors.torch import load_file

    return {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_a_checkpoint_is_copied_with_its_hashes(made):
    root, _ = made
    meta = _fetch(root, {"path": str(root / "ckpt"), "revision": None}, out="ckpt_out")
    assert {k: v.tolist() for k, v in _tensors(root / "ckpt_out").items()} == {
        k: v.tolist() for k, v in _tensors(root / "ckpt").items()
    }
    ext = meta["external"]
    assert ext["kind"] == "checkpoint" and ext["tokenizer"] == "matches the dataset's"
    assert ext["files"]["model.safetensors"] == runtime.hash_path(root / "ckpt/model.safetensors")
    assert set(ext["files"]) == {"config.json", "model.safetensors"}
    assert runtime.read_json(root / "ckpt_out/meta.json")["external"] == ext


def test_an_adapter_is_merged_into_the_target_and_computes_what_the_peft_model_computes(made):
    from peft import PeftModel

    root, tok = made
    meta = _fetch(root, {"adapter": str(root / "adapter")}, out="merged")
    assert meta["external"]["kind"] == "adapter" and meta["external"]["adapter"]["r"] == 4
    ids = tok(["Question: Who is the first person? Answer:"], return_tensors="pt").input_ids
    peft_model = PeftModel.from_pretrained(
        load_model(root / "target", device=torch.device("cpu")), str(root / "adapter")
    )
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = load_model(root / "merged", device=torch.device("cpu"))(input_ids=ids).logits
        base = load_model(root / "target", device=torch.device("cpu"))(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert (got - base).abs().max() > 1e-3  # the adapter changed the model: the check above can fail
    assert sorted(_tensors(root / "merged")) == sorted(_tensors(root / "target"))  # no lora_* tensors left


def _bin_only(root):
    d = root / "bin_only"
    if not d.exists():
        d.mkdir()
        shutil.copy(root / "ckpt/config.json", d / "config.json")
        torch.save({"x": torch.zeros(1)}, d / "pytorch_model.bin")
    return d


def test_a_bin_only_checkpoint_is_refused_naming_the_model_and_the_file(made):
    root, _ = made
    with pytest.raises(ExternalModelError, match=r"external model 'mine' .*pytorch_model\.bin"):
        _fetch(root, {"path": str(_bin_only(root))}, out="never")
    assert not (root / "never").exists()


def test_a_missing_adapter_config_is_an_error_naming_the_model(made):
    root, _ = made
    d = root / "no_config"
    shutil.copytree(root / "adapter", d)
    (d / "adapter_config.json").unlink()
    with pytest.raises(ExternalModelError, match=r"external model 'mine' .*no adapter_config\.json"):
        _fetch(root, {"adapter": str(d)}, out="never")


def test_a_vocabulary_size_other_than_the_targets_is_an_error(made):
    root, tok = made
    tok2 = load_tokenizer(root / "data/tokenizer")
    tok2.add_tokens(["<extra>"])
    save_model(build_tiny_llama(MICRO, tok2, 0), tok, root / "wrong_vocab")  # the dataset's tokenizer files
    with pytest.raises(ExternalModelError, match=rf"external model 'mine' .*vocab_size {len(tok) + 1}"):
        _fetch(root, {"path": str(root / "wrong_vocab")}, out="never")


def test_a_tokenizer_other_than_the_datasets_is_an_error(made):
    root, _ = made
    d = root / "wrong_tok"
    shutil.copytree(root / "ckpt", d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["eos_token"] = "<s>"
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExternalModelError, match=r"external model 'mine' .*tokenizer does not match.*eos_token '<s>'"):
        _fetch(root, {"path": str(d)}, out="never")


def test_another_architecture_is_an_error_naming_what_differs(made):
    from transformers import MistralConfig, MistralForCausalLM

    root, tok = made
    config = MistralConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    save_model(MistralForCausalLM(config), tok, root / "mistral")
    with pytest.raises(ExternalModelError, match=r"external model 'mine' .*architectures \['MistralForCausalLM'\]"):
        _fetch(root, {"path": str(root / "mistral")}, out="never")


def test_an_adapter_for_another_base_is_an_error_naming_the_model(made):
    from peft import LoraConfig, get_peft_model

    root, tok = made
    wide = build_tiny_llama(ModelConfig(hidden_size=48, num_layers=1, num_heads=2, intermediate_size=64), tok, 0)
    get_peft_model(wide, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(root / "wide_adapter"))
    with pytest.raises(ExternalModelError, match=r"external model 'mine' .*does not fit the dataset's target"):
        _fetch(root, {"adapter": str(root / "wide_adapter")}, out="never")


# ---- planning -----------------------------------------------------------------------------------
def _config(root, **external):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["quantize"]["schemes"]["gptq"] = {"quantizer": "gptq", "bits": 4, "group_size": 32, "calibration_samples": 4}
    cfg["datasets"]["synth"]["external"] = external or {
        "ckpt": {"path": str(root / "ckpt")},
        "lora": {"adapter": str(root / "adapter")},
    }
    return cfg


def test_config_errors_name_the_model(made):
    root, _ = made
    with pytest.raises(ConfigError, match=r"datasets\.synth\.external\.both: give exactly one of"):
        Experiment(_config(root, both={"path": str(root / "ckpt"), "adapter": str(root / "adapter")}))
    with pytest.raises(ConfigError, match=r"datasets\.synth\.external\.ga_gdr: 'ga_gdr' is an unlearning method"):
        Experiment(_config(root, ga_gdr={"path": str(root / "ckpt")}))
    with pytest.raises(
        ConfigError, match=r"external model 'old' \(datasets\.synth\.external\.old\).*pytorch_model\.bin"
    ):
        Experiment(_config(root, old={"path": str(_bin_only(root))}))
    with pytest.raises(ConfigError, match=r"external model 'gone' .*is not a directory"):
        Experiment(_config(root, gone={"adapter": str(root / "nowhere")}))


def test_external_models_are_evaluated_quantized_analysed_and_reported(made):
    root, _ = made
    exp = Experiment(_config(root))
    ids = ["external/ckpt", "external/lora"]
    assert exp.external_ids("synth") == ids
    for mid in ids:
        assert (
            sorted(exp.model_schemes("synth", mid)) == sorted(exp.dataset_schemes("synth")) == ["fp32", "gptq", "rtn4"]
        )
        assert mid in exp.analysis_model_ids("synth") and mid in exp.headline_ids()["synth"]
        assert exp.analysis_inputs("synth", mid)["unlearned_gptq"] == paths.quant_dir("synth", mid, "gptq")
    assert exp.external_params("synth", "lora")["adapter"] == str(root / "adapter")
    # a config without external models plans what it planned before
    plain = _config(root)
    del plain["datasets"]["synth"]["external"]
    assert not {mid for _, mid, _ in Experiment(plain).evaluations} & set(ids)


def test_dry_run_plans_fetch_evaluate_quantize_and_analysis_for_external_ids(made, tmp_path):
    root, _ = made
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(root)))
    out = snakemake("-n", "--forceall", "--configfile", str(path), "--directory", str(tmp_path)).stdout
    outputs = set(re.findall(r"output: (\S+)", out))
    for name in ("ckpt", "lora"):
        assert f"results/synth/models/external/{name}" in outputs
        assert f"results/synth/quant/external/{name}/gptq" in outputs
        assert f"results/synth/analysis/external/{name}" in outputs
        assert {f"results/synth/eval/external/{name}/{s}.json" for s in ("fp32", "rtn4", "gptq")} <= outputs
    assert re.search(
        rf"input: results/synth/models/target, results/synth/data, {root / 'adapter'}\n\s+output: "
        r"results/synth/models/external/lora",
        out,
    )


# ---- the tables ----------------------------------------------------------------------------------
def _eval(root, model_id, m1, m2, m4):
    path = root / "results/d/eval" / model_id / "fp32.json"
    runtime.write_json_atomic(path, {"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4, "mia_auc": 0.5}})
    return str(path)


def _aggregate(root, evals, headline):
    from qunlearn.report import catalog
    from qunlearn.report.stages import aggregate

    out = {k: str(root / v) for k, v in catalog.outputs("aggregate").items()}
    aggregate(evals, {}, out, headline_ids={"d": headline})
    return root / "results/tables"


def test_an_external_model_is_a_row_of_every_headline_table_beside_the_methods(tmp_path):
    import pandas as pd

    from qunlearn.report.frame import LONG_COLUMNS

    arm = "unlearn/ga_gdr/alpha~1/lr~1e-05/epochs~1/loss~faithful"
    evals = [
        _eval(tmp_path, "target", 0.8, 0.8, 1.0),
        _eval(tmp_path, "retrain", 0.1, 0.1, 1.0),
        _eval(tmp_path, arm, 0.4, 0.2, 0.9),
    ]
    plain = _aggregate(tmp_path / "plain", evals, [arm])
    tables = _aggregate(
        tmp_path / "ext", [*evals, _eval(tmp_path, "external/mine", 0.2, 0.6, 0.95)], [arm, "external/mine"]
    )
    m = pd.read_csv(tables / "metrics.csv", keep_default_na=False)
    assert list(m.columns) == list(pd.read_csv(plain / "metrics.csv").columns) == LONG_COLUMNS
    ext = m[m.model_id == "external/mine"]
    assert set(ext.model) == {"external"} and set(ext.method) == {"mine"} and set(ext.alpha) == {""}
    ret = pd.read_csv(tables / "retention.csv", keep_default_na=False).set_index("method")
    assert ret.loc["mine", "retention"] == pytest.approx((0.2 / 0.8 + 0.6 / 0.8) / 2)
    assert ret.loc["mine", "model"] == "external" and ret.loc["ga_gdr", "model"] == "unlearn"
    rows = [line.split("|")[2].strip() for line in (tables / "table1.md").read_text().splitlines()[2:]]
    assert rows == ["Target", "Retrain", "GA_GDR (alpha=1, lr=1e-05)", "mine (external)"]
    assert "mine" in (tables / "retention.md").read_text()
    summary = runtime.read_json(tables / "summary.json")["d"]
    assert summary["external_retention"] == {"mine": {"fp32": pytest.approx(0.5)}}
    # the mean of the utility-constrained methods is the built-in arm's alone, as without it
    assert (
        summary["mean_retention_utility_constrained"]
        == runtime.read_json(plain / "summary.json")["d"]["mean_retention_utility_constrained"]
    )
    assert "external_retention" not in runtime.read_json(plain / "summary.json")["d"]


# ---- a real run ---------------------------------------------------------------------------------
@pytest.mark.e2e
def test_external_checkpoint_and_adapter_run_through_evaluate_quantize_analysis_and_the_tables(tmp_path):
    """The micro config's target is made first; a perturbed copy and a LoRA adapter of it are then
    declared as external models and the whole DAG runs: both appear in every headline table with
    their name as method and model 'external'."""
    import pandas as pd
    from conftest import run_snakemake
    from peft import LoraConfig, get_peft_model

    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["unlearn"]["methods"] = {"ga_gdr": {"alphas": [2]}}
    cfg["report"]["utility_constrained"] = ["ga_gdr"]
    cfg["quantize"]["schemes"]["gptq"] = {"quantizer": "gptq", "bits": 4, "group_size": 32, "calibration_samples": 4}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "work"
    run_snakemake(work, "results/synth/models/target", configfile=path)
    target = work / "results/synth/models/target"
    model = load_model(target, device=torch.device("cpu"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_model(model, load_tokenizer(target), tmp_path / "ckpt")
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(2)
    get_peft_model(load_model(target, device=torch.device("cpu")), lora).save_pretrained(str(tmp_path / "adapter"))
    cfg["datasets"]["synth"]["external"] = {
        "mine": {"path": str(tmp_path / "ckpt")},
        "lora": {"adapter": str(tmp_path / "adapter")},
    }
    path.write_text(yaml.safe_dump(cfg))
    run_snakemake(work, configfile=path)

    m = pd.read_csv(work / "results/tables/metrics.csv", keep_default_na=False)
    ext = m[m.model == "external"]
    assert set(ext.method) == {"mine", "lora"} and set(ext.model_id) == {"external/mine", "external/lora"}
    assert set(ext.scheme) == {"fp32", "rtn4", "gptq"} and ext.headline.astype(str).eq("True").all()
    assert set(m[m.model == "unlearn"].method) == {"ga_gdr"}
    ret = pd.read_csv(work / "results/tables/retention.csv", keep_default_na=False)
    assert {"mine", "lora"} <= set(ret[ret.model == "external"].method)
    table1 = (work / "results/tables/table1.md").read_text()
    assert "mine (external)" in table1 and "lora (external)" in table1
    wc = pd.read_csv(work / "results/tables/weight_change.csv", keep_default_na=False)
    overall = wc[(wc.scope == "overall") & (wc.scheme == "fp32")].set_index("method")
    assert overall.loc["mine", "rel_l2"] > 0 and overall.loc["lora", "rel_l2"] > 0
    assert "mine" in set(pd.read_csv(work / "results/tables/retention_by_bits.csv").method)
    summary = runtime.read_json(work / "results/tables/summary.json")["synth"]
    assert set(summary["external_retention"]) == {"mine", "lora"} and summary["methods"] == ["ga_gdr"]
    meta = runtime.read_json(work / "results/synth/models/external/lora/meta.json")
    assert meta["external"]["kind"] == "adapter" and meta["external"]["files"]["adapter_config.json"]
