"""Sharded unlearning (FSDP2, launched by `accelerate launch`) in 2 CPU processes on gloo: the
unlearned weights equal the single-process run's; the process count comes from the allocation."""

import pytest
import torch
from safetensors.torch import load_file

from qunlearn import distributed, runtime
from qunlearn.config import ModelConfig, SyntheticCorpusConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.models import build_tiny_llama, save_model
from qunlearn.stages import unlearn_model

MICRO = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_length=128)
# fp32, 2 processes each summing half of the batch, FSDP reduce-scatter, then AdamW (which
# amplifies the rounding of near-zero gradients of rare tokens' embedding rows: see
# tests/test_accumulation.py); measured max |diff| below 1e-5 at lr 1e-3
ATOL, RTOL = 1e-4, 1e-4


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(d, "raw", s)]
    tok = train_tokenizer(texts, 600, d / "tokenizer")
    runtime.seed_everything(0, 1)
    save_model(build_tiny_llama(MICRO, tok, 0), tok, d / "base")
    return d


def test_processes_come_from_the_allocation(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert distributed.allocated_processes(2) == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert distributed.allocated_processes(2) == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert distributed.allocated_processes(3) == 3
    cmd = distributed.launch_command(2, "args.json")
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--use_fsdp" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[-3:] == ["-m", "qunlearn.distributed", "args.json"]


def test_two_sharded_processes_give_the_single_process_weights(base, tmp_path, monkeypatch):
    """NPO_GDR_SURE: the frozen reference sharded like the model, SURE's threshold over both
    processes' rows, micro-batches split across the processes; 2 epochs (4+ steps)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = {"method": "npo_gdr_sure", "alpha": 1.0, "lr": 1e-3, "epochs": 2, "batch_size": 8, "settings": {}}
    metas, weights = {}, {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        metas[n] = unlearn_model(
            base / "base", base, out, {**cfg, "processes": n}, max_length=64, seed=0, threads=2, progress=False
        )
        weights[n] = load_file(out / "model.safetensors")
    assert metas[2]["scale"]["processes"] == 2 and len(metas[2]["scale"]["peak_rss_mb"]) == 2
    assert metas[1]["history"]["steps"] == metas[2]["history"]["steps"] >= 4
    initial = load_file(base / "base" / "model.safetensors")
    assert max((weights[1][k] - initial[k]).abs().max().item() for k in initial) > 1e-3  # it moved
    assert weights[1].keys() == weights[2].keys()
    for k in weights[1]:
        diff = (weights[1][k] - weights[2][k]).abs().max().item()
        assert torch.allclose(weights[1][k], weights[2][k], atol=ATOL, rtol=RTOL), (k, diff)
    for a, b in zip(metas[1]["history"]["epochs"], metas[2]["history"]["epochs"]):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
