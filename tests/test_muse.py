"""Real-scale paths tested offline: the MUSE loader on fixture files in the hub schema, published
bases through the local-path route (a tiny hub-format model saved here), and the clear errors
when neither the hub nor a local copy is there."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT

from qunlearn.config import ConfigError, DatasetConfig, MuseConfig, from_dict
from qunlearn.data import muse, muse_format

FIXTURE = ROOT / "tests" / "fixtures" / "muse-news"


def fixture_records(config, split):
    with open(FIXTURE / config / f"{split}.jsonl") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_loader_reads_every_split_of_the_fixture_through_load_dataset(tmp_path):
    counts = muse.write_muse(
        MuseConfig(hub_id="muse-bench/MUSE-News", local_dir=str(FIXTURE), cache_dir=str(tmp_path / "cache")),
        tmp_path / "data",
    )
    assert set(counts) == {f"{c}/{s}" for c, splits in muse_format.SPLITS.items() for s in splits}
    for config, splits in muse_format.SPLITS.items():
        for split in splits:
            # written in our layout, field for field what the hub-schema file holds
            assert muse_format.read_split(tmp_path / "data", config, split) == fixture_records(config, split)
    assert counts["raw/forget"] == 3 and counts["knowmem/forget_qa"] == 2


def test_max_items_keeps_the_first_records(tmp_path):
    cfg = MuseConfig(local_dir=str(FIXTURE), max_items=1, cache_dir=str(tmp_path / "cache"))
    assert muse.load_split(cfg, "raw", "retain1") == fixture_records("raw", "retain1")[:1]


def test_a_local_copy_missing_a_field_names_it(tmp_path):
    bad = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(FIXTURE), str(bad)], check=True)
    (bad / "knowmem" / "retain_qa.jsonl").write_text('{"question": "q?", "reply": "a"}\n')
    with pytest.raises(muse_format.DataFormatError, match=r"knowmem/retain_qa.*'answer'"):
        muse.load_split(MuseConfig(local_dir=str(bad), cache_dir=str(tmp_path / "c")), "knowmem", "retain_qa")


def test_missing_local_dir_is_a_clear_error(tmp_path):
    with pytest.raises(muse.MuseUnavailableError, match="not a directory"):
        muse.load_split(MuseConfig(local_dir=str(tmp_path / "nope")), "raw", "forget")


def test_unreachable_hub_without_local_copy_says_how_to_provide_it(tmp_path):
    code = textwrap.dedent(
        """
        from qunlearn.config import MuseConfig
        from qunlearn.data import muse
        try:
            muse.load_split(MuseConfig(hub_id="muse-bench/MUSE-News", cache_dir={!r}), "raw", "forget",
                            where="datasets.news.muse")
        except muse.MuseUnavailableError as err:
            print(err)
        else:
            print("LOADED")
    """
    ).format(str(tmp_path / "empty-cache"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "muse-bench/MUSE-News" in out and "raw/forget" in out, out
    assert "datasets.news.muse.local_dir" in out and "HF_DATASETS_OFFLINE=1" in out, out


def test_dataset_config_knows_the_muse_source():
    cfg = from_dict(DatasetConfig, {"source": "muse", "muse": {"hub_id": "muse-bench/MUSE-Books"}}, "d")
    assert cfg.muse.hub_id == "muse-bench/MUSE-Books"
    with pytest.raises(ConfigError, match="d.muse"):
        from_dict(DatasetConfig, {"source": "muse"}, "d")
    with pytest.raises(ConfigError, match=r"d.pretrained.target: give exactly one"):
        from_dict(DatasetConfig, {"pretrained": {"target": {"hub_id": "a", "path": "/b"}}}, "d")


# --- published bases: a tiny model in hub format, loaded by the local-path route -----------------


def llama_style_tokenizer(out_dir):
    """A tokenizer without a pad token, like Llama-2's, saved as a hub tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["text"] for s in ("forget", "retain1", "retain2", "holdout") for r in fixture_records("raw", s)]
    texts += [r[f] for r in fixture_records("verbmem", "forget") for f in ("prompt", "gt")]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<unk>", "<s>", "</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(str(out_dir))
    return fast


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory):
    """A tiny LlamaForCausalLM saved as the hub serves one (safetensors + tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("hub") / "MUSE-News_target"
    tok = llama_style_tokenizer(d)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    model.save_pretrained(str(d), safe_serialization=True)
    assert not list(d.glob("*.bin"))
    return d


@pytest.fixture(scope="module")
def muse_data(tmp_path_factory, hub_model):
    from qunlearn.stages import prepare_data

    out = tmp_path_factory.mktemp("data") / "data"
    prepare_data(
        {
            "source": "muse",
            "muse": {"local_dir": str(FIXTURE), "cache_dir": str(out.parent / "cache")},
            "tokenizer": {"pretrained": str(hub_model)},
        },
        out,
        name="news",
    )
    return out


def test_prepare_data_muse_uses_the_model_tokenizer_with_pad_eos(muse_data, hub_model):
    from qunlearn.data.tokenizer import load_tokenizer

    tok = load_tokenizer(muse_data / "tokenizer")
    assert tok.pad_token == tok.eos_token == "</s>"
    assert len(tok) == len(load_tokenizer(hub_model))
    meta = json.loads((muse_data / "meta.json").read_text())
    assert meta["config"]["muse"]["local_dir"] == str(FIXTURE) and meta["splits"]["privleak/holdout"]["records"] == 2


def test_fetch_unlearn_evaluate_a_bf16_hub_format_model_on_cpu(tmp_path, hub_model, muse_data):
    from qunlearn.hub import fetch_model
    from qunlearn.models import load_model
    from qunlearn.stages import evaluate_model, unlearn_model

    spec = {"path": str(hub_model), "hub_id": None, "revision": None, "dtype": "bfloat16", "trust_remote_code": False}
    fetched = tmp_path / "pretrained" / "target"
    meta = fetch_model(spec, muse_data, fetched)
    assert meta["config"]["dtype"] == "bfloat16" and meta["inputs"]["model"]["sha256"]
    assert list(fetched.glob("*.safetensors")) and not list(fetched.glob("*.bin"))
    model = load_model(fetched)
    assert next(model.parameters()).dtype == torch.bfloat16  # stays in the configured dtype
    assert model.config.pad_token_id == model.config.eos_token_id
    unlearned = tmp_path / "unlearn"
    hist = unlearn_model(
        fetched,
        muse_data,
        unlearned,
        {
            "method": "npo_gdr",
            "alpha": 1.0,
            "lr": 1e-3,
            "epochs": 1,
            "batch_size": 2,
            "reference_device": "cpu",
            "optimizer": "adafactor",
            "gradient_checkpointing": True,
        },
        max_length=2048,
        seed=0,
        threads=1,
        progress=False,
    )["history"]
    assert hist["steps"] == 2 and hist["n_forget_chunks"] == 3
    after = load_model(unlearned)
    assert next(after.parameters()).dtype == torch.bfloat16
    changed = any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), after.state_dict().values()))
    assert changed
    out = evaluate_model(
        unlearned,
        muse_data,
        tmp_path / "eval.json",
        {"quantizer": "none"},
        {"batch_size": 2, "verbmem_max_new_tokens": 4, "knowmem_max_new_tokens": 4},
        seed=0,
        threads=1,
        scheme_name="bf16",
        progress=False,
    )
    assert len(out["items"]["verbmem_f"]) == 2 and len(out["items"]["knowmem_r"]) == 2
    assert 0.0 <= out["metrics"]["mia_auc"] <= 1.0


def test_local_path_without_safetensors_is_refused(tmp_path, muse_data):
    from qunlearn.hub import HubUnavailableError, fetch_model

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(HubUnavailableError, match=r"x.path: .* no \*.safetensors"):
        fetch_model({"path": str(tmp_path / "m"), "dtype": "bfloat16"}, muse_data, tmp_path / "out", where="x")


def test_unreachable_model_hub_names_the_model_and_the_path_key(tmp_path, muse_data):
    code = textwrap.dedent(
        """
        from qunlearn.hub import HubUnavailableError, fetch_model
        try:
            fetch_model({{"hub_id": "muse-bench/MUSE-News_target", "dtype": "bfloat16"}}, {!r}, {!r},
                        where="datasets.news.pretrained.target")
        except HubUnavailableError as err:
            print(err)
    """
    ).format(str(muse_data), str(tmp_path / "out"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120).stdout
    assert "muse-bench/MUSE-News_target" in out and "datasets.news.pretrained.target.path" in out, out
    assert "HF_HUB_OFFLINE=1" in out
    assert not (tmp_path / "out").exists()
