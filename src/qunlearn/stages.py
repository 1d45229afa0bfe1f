"""One function per pipeline stage. Snakemake's scripts are thin adapters around these; each takes
its own config slice as a plain dict, writes its output atomically and puts ``meta.json`` beside it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import runtime
from .config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    ReleaseConfig,
    SchemeConfig,
    TrainConfig,
    UnlearnConfig,
    from_dict,
    to_dict,
)
from .data import muse_format

log = logging.getLogger(__name__)


def prepare_data(dataset: dict, out_dir: str | Path, name: str = "dataset") -> dict:
    """Write the MUSE-format splits and the tokenizer of one dataset."""
    from .data.synthetic import write_corpus
    from .data.tokenizer import train_tokenizer

    started = time.time()
    cfg = from_dict(DatasetConfig, dataset, f"datasets.{name}")
    if cfg.source not in ("synthetic", "muse"):
        raise ValueError(f"datasets.{name}.source: prepare_data handles 'synthetic' and 'muse', got {cfg.source!r}")
    with runtime.atomic_dir(out_dir) as tmp:
        if cfg.source == "muse":  # the benchmark itself (hub or local copy), data/muse.py
            from .data.muse import write_muse

            counts = write_muse(cfg.muse, tmp, f"datasets.{name}.muse")
            source_cfg = {"muse": to_dict(cfg.muse)}
        else:
            counts = write_corpus(cfg.synthetic, tmp)
            source_cfg = {"synthetic": to_dict(cfg.synthetic)}
        if cfg.tokenizer.pretrained:  # a published tokenizer (MUSE: the targets' Llama-2 one, pad = eos)
            from .hub import load_pretrained_tokenizer

            tok = load_pretrained_tokenizer(cfg.tokenizer.pretrained, cfg.tokenizer.revision,
                                            where=f"datasets.{name}.tokenizer")
            tok.save_pretrained(str(tmp / "tokenizer"))
        else:
            texts = [t for s in ("forget", "retain1", "retain2", "holdout")
                     for t in muse_format.read_texts(tmp, "raw", s)]
            tok = train_tokenizer(texts, cfg.tokenizer.vocab_size, tmp / "tokenizer")
        meta = runtime.build_meta("prepare_data", {**source_cfg, "tokenizer": to_dict(cfg.tokenizer)},
                                  cfg.synthetic.seed, {}, started,
                                  {"counts": counts, "vocab_size": len(tok)})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def _base_texts(data_dir: Path, base: str) -> list[str]:
    splits = ("forget", "retain1", "retain2") if base == "target" else ("retain1", "retain2")
    return [t for s in splits for t in muse_format.read_texts(data_dir, "raw", s)]


def train_base(base: str, data_dir: str | Path, out_dir: str | Path, model_cfg: dict, train_cfg: dict,
               eval_cfg: dict, seed: int, threads: int | None = None, progress: bool = True) -> dict:
    """Train ``base`` ('target': forget + retain1 + retain2; 'retrain': retain only) from scratch."""
    from .data.tokenizer import load_tokenizer
    from .models import build_tiny_llama, count_parameters, pick_device, save_model
    from .train import memorisation_checks, train_until_memorised

    if base not in ("target", "retrain"):
        raise ValueError(f"base must be 'target' or 'retrain', got {base!r}")
    started = time.time()
    runtime.seed_everything(seed, threads)
    mcfg = from_dict(ModelConfig, model_cfg, "model")
    tcfg = from_dict(TrainConfig, train_cfg, "train")
    ecfg = from_dict(EvalConfig, eval_cfg, "evaluate")
    data_dir = Path(data_dir)
    tok = load_tokenizer(data_dir / "tokenizer")
    model = build_tiny_llama(mcfg, tok, seed).to(pick_device())
    read = muse_format.read_split
    qa_sets = {"retain_qa": (read(data_dir, "knowmem", "retain_qa"), read(data_dir, "knowmem", "retain_qa_icl"))}
    verbmem_items = None
    if base == "target":
        qa_sets["forget_qa"] = (read(data_dir, "knowmem", "forget_qa"), read(data_dir, "knowmem", "forget_qa_icl"))
        verbmem_items = read(data_dir, "verbmem", "forget")
    checks = memorisation_checks(tok, qa_sets, verbmem_items, tcfg, ecfg)
    history = train_until_memorised(model, tok, _base_texts(data_dir, base), checks, tcfg, seed,
                                    mcfg.max_length, progress)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        meta = runtime.build_meta(f"train_{base}", {"model": to_dict(mcfg), "train": to_dict(tcfg)},
                                  seed, {"data": data_dir}, started,
                                  {"history": history, "n_parameters": count_parameters(model)})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def release(trained_dir: str | Path, out_dir: str | Path, release_cfg: dict | None) -> dict:
    """Publish a trained model as configured (optionally snapped onto an RTN grid)."""
    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model
    from .quantize.rtn import snap_linears

    started = time.time()
    cfg = from_dict(ReleaseConfig, release_cfg or {}, "release")
    with runtime.atomic_dir(out_dir) as tmp:
        if cfg.snap_bits is None:
            for f in Path(trained_dir).iterdir():
                if f.name != "meta.json":
                    runtime.link_or_copy(f, tmp / f.name)  # a hard link: no second copy of 7B weights
            snapped: list[str] = []
        else:
            import torch

            model = load_model(trained_dir, device=torch.device("cpu"))
            snapped = snap_linears(model, cfg.snap_bits, cfg.snap_group_size, cfg.snap_lm_head)
            save_model(model, load_tokenizer(trained_dir), tmp)
        meta = runtime.build_meta("release", to_dict(cfg), None, {"trained": trained_dir}, started,
                                  {"snapped_layers": snapped})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def unlearn_model(base_dir: str | Path, data_dir: str | Path, out_dir: str | Path, unlearn_cfg: dict,
                  max_length: int, seed: int, threads: int | None = None, progress: bool = True) -> dict:
    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model
    from .unlearn import unlearn

    started = time.time()
    runtime.seed_everything(seed, threads)
    cfg = from_dict(UnlearnConfig, unlearn_cfg, "unlearn")
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir)
    forget = muse_format.read_texts(data_dir, "raw", "forget")
    retain = muse_format.read_texts(data_dir, "raw", "retain1")
    history = unlearn(model, tok, forget, retain, cfg, seed, max_length, progress)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        meta = runtime.build_meta("unlearn", to_dict(cfg), seed, {"base": base_dir, "data": data_dir},
                                  started, {"history": history})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def evaluate_model(model_dir: str | Path, data_dir: str | Path, out_json: str | Path, scheme: dict,
                   eval_cfg: dict, seed: int, threads: int | None = None, scheme_name: str = "scheme",
                   progress: bool = True) -> dict:
    """Quantize a model as ``scheme`` says and compute every metric; keeps per-item outputs."""
    from .data.tokenizer import load_tokenizer
    from .evaluate.runner import evaluate_all
    from .models import load_model
    from .quantize import quantize_model

    started = time.time()
    runtime.seed_everything(seed, threads)
    scfg = from_dict(SchemeConfig, scheme, f"quantize.schemes.{scheme_name}")
    ecfg = from_dict(EvalConfig, eval_cfg, "evaluate")
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir)
    qinfo = quantize_model(model, scfg)
    result = evaluate_all(model, tok, data_dir, ecfg, progress)
    out = {
        "model_dir": str(model_dir),
        "scheme": scheme_name,
        "quantization": qinfo,
        **result,
        "meta": runtime.build_meta("evaluate", {"scheme": to_dict(scfg), "evaluate": to_dict(ecfg)}, seed,
                                   {"model": model_dir, "data": data_dir}, started),
    }
    runtime.write_json_atomic(out_json, out)
    return out
