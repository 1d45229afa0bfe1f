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


def write_muse_layout(root, skip=()):
    """The fixture's records in MUSE's own layout (data/<corpus>/ of the benchmark's repository):
    raw/forget as .txt (documents joined by a blank line), other text splits as JSON lists of
    strings, the QA and VerbMem splits as JSON lists of records; no dataset card."""
    for config, splits in muse_format.SPLITS.items():
        for split in splits:
            if f"{config}/{split}" in skip:
                continue
            records = fixture_records(config, split)
            (root / config).mkdir(parents=True, exist_ok=True)
            if (config, split) == ("raw", "forget"):
                (root / config / "forget.txt").write_text("\n\n".join(r["text"] for r in records))
            elif muse_format.SPLITS[config][split] == ("text",):
                (root / config / f"{split}.json").write_text(json.dumps([r["text"] for r in records]))
            else:
                (root / config / f"{split}.json").write_text(json.dumps(records, indent=1))
    return root


def test_loader_reads_muse_own_layout_as_the_hub_snapshot(tmp_path):
    src = write_muse_layout(tmp_path / "muse_bench" / "data" / "news")
    assert muse.is_muse_layout(src) and not muse.is_muse_layout(FIXTURE)
    counts = muse.write_muse(MuseConfig(local_dir=str(src)), tmp_path / "data")
    assert "missing" not in counts
    for config, splits in muse_format.SPLITS.items():
        for split in splits:
            got, want = muse_format.read_split(tmp_path / "data", config, split), fixture_records(config, split)
            if (config, split) == ("raw", "forget"):  # .txt: split at blank lines, the joined text is kept
                join = "\n\n".join
                assert join(r["text"] for r in got) == join(r["text"] for r in want)
            else:
                assert got == want


def test_a_missing_split_names_itself_its_file_and_its_users_and_the_rest_is_written(tmp_path):
    src = write_muse_layout(tmp_path / "news", skip={"raw/retain1"})
    counts = muse.write_muse(MuseConfig(local_dir=str(src)), tmp_path / "data")
    assert list(counts["missing"]) == ["raw/retain1"]
    why = counts["missing"]["raw/retain1"]
    assert "raw/retain1" in why and str(src / "raw" / "retain1.json") in why and "GDR" in why
    assert counts["raw/forget"] >= 3 and counts["privleak/holdout"] == 2
    with pytest.raises(muse_format.DataFormatError, match=r"retain1\.jsonl: missing .*raw/retain1.*GDR"):
        muse_format.read_split(tmp_path / "data", "raw", "retain1")


def test_a_muse_layout_record_without_its_field_names_file_and_item(tmp_path):
    src = write_muse_layout(tmp_path / "news")
    (src / "verbmem" / "forget.json").write_text(json.dumps([{"prompt": "p", "gt": "g"}, {"prompt": "p"}]))
    with pytest.raises(muse_format.DataFormatError, match=r"forget\.json item 1: .*\['prompt', 'gt'\]"):
        muse.load_split(MuseConfig(local_dir=str(src)), "verbmem", "forget")


def test_ga_unlearns_without_a_retain_split(tmp_path, hub_model):
    """GA has no retain term: it runs on MUSE data whose raw/retain1 is missing."""
    from qunlearn.stages import prepare_data, unlearn_model

    src = write_muse_layout(tmp_path / "news", skip={"raw/retain1"})
    data = tmp_path / "data"
    meta = prepare_data(
        {"source": "muse", "muse": {"local_dir": str(src)}, "tokenizer": {"pretrained": str(hub_model)}},
        data,
        name="news",
    )
    assert list(meta["missing"]) == ["raw/retain1"]
    cfg = {"method": "ga", "alpha": 1.0, "lr": 1e-3, "epochs": 1, "batch_size": 2, "data_format": "packed"}
    hist = unlearn_model(hub_model, data, tmp_path / "ga", cfg, max_length=64, seed=0, threads=1, progress=False)
    assert hist["history"]["n_retain_chunks"] == 0 and hist["history"]["steps"] >= 1
    with pytest.raises(muse_format.DataFormatError, match="raw/retain1"):
        unlearn_model(hub_model, data, tmp_path / "gdr", {**cfg, "method": "ga_gdr"}, max_length=64, seed=0, threads=1)


def test_a_hub_snapshot_missing_one_file_fails_that_split_alone(tmp_path):
    import shutil

    src = tmp_path / "MUSE-News"
    shutil.copytree(FIXTURE, src)
    (src / "raw" / "retain1.jsonl").unlink()
    counts = muse.write_muse(MuseConfig(local_dir=str(src), cache_dir=str(tmp_path / "cache")), tmp_path / "data")
    assert list(counts["missing"]) == ["raw/retain1"]
    why = counts["missing"]["raw/retain1"]
    assert str(src / "raw" / "retain1.jsonl") in why and "retain term" in why and len(why) < 400
    # the other raw splits (same config) are read
    assert muse_format.read_split(tmp_path / "data", "raw", "retain2") == fixture_records("raw", "retain2")
