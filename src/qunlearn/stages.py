"""One function per pipeline stage. Snakemake's scripts are thin adapters around these; each takes
its own config slice as a plain dict, writes its output atomically and puts ``meta.json`` beside it."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from . import (
    deploy,
    registries,  # noqa: F401  (fills the plugin registries that Scheme.from_config reads)
    runtime,
)
from .config import (
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    ReleaseConfig,
    TrainConfig,
    UnlearnConfig,
    from_dict,
    to_dict,
)
from .data import muse_format
from .paths import fmt_num
from .plugins import Scheme

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

            tok = load_pretrained_tokenizer(
                cfg.tokenizer.pretrained, cfg.tokenizer.revision, where=f"datasets.{name}.tokenizer"
            )
            tok.save_pretrained(str(tmp / "tokenizer"))
        else:
            texts = [
                t for s in ("forget", "retain1", "retain2", "holdout") for t in muse_format.read_texts(tmp, "raw", s)
            ]
            tok = train_tokenizer(texts, cfg.tokenizer.vocab_size, tmp / "tokenizer")
        # per split: record count and sha256 of the file, checked by every later read (muse_format)
        splits = muse_format.split_manifest(tmp)
        written = {k: v["records"] for k, v in splits.items()}
        missing = counts.pop("missing", {})  # splits the source lacked (data/muse.py), each with why
        if written != counts:
            raise RuntimeError(f"{out_dir}: split files hold {written} records, the writer reported {counts}")
        meta = runtime.build_meta(
            "prepare_data",
            {**source_cfg, "tokenizer": to_dict(cfg.tokenizer)},
            cfg.synthetic.seed,
            {},
            started,
            {muse_format.MANIFEST_KEY: splits, "missing": missing, "vocab_size": len(tok)},
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def _base_texts(data_dir: Path, base: str) -> list[str]:
    splits = ("forget", "retain1", "retain2") if base == "target" else ("retain1", "retain2")
    return [t for s in splits for t in muse_format.read_texts(data_dir, "raw", s)]


def train_base(
    base: str,
    data_dir: str | Path,
    out_dir: str | Path,
    model_cfg: dict,
    train_cfg: dict,
    eval_cfg: dict,
    seed: int,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
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
    history = train_until_memorised(
        model, tok, _base_texts(data_dir, base), checks, tcfg, seed, mcfg.max_length, progress
    )
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        meta = runtime.build_meta(
            f"train_{base}",
            {"model": to_dict(mcfg), "train": to_dict(tcfg)},
            seed,
            {"data": data_dir},
            started,
            {"history": history, "n_parameters": count_parameters(model)},
        )
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
        meta = runtime.build_meta(
            "release", to_dict(cfg), None, {"trained": trained_dir}, started, {"snapped_layers": snapped}
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def unlearn_model(
    base_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    unlearn_cfg: dict,
    max_length: int,
    seed: int,
    threads: int | None = None,
    progress: bool = True,
    selection_json: str | Path | None = None,
    grid_twins: dict[str, str] | None = None,
    device: str | None = None,
    prepared_dir: str | Path | None = None,
) -> dict:
    """Unlearn the forget set from ``base_dir``. ``prepared_dir``: the method's preparatory model
    (spec trait ``preparation``; rule prepare_method). With ``selection_json`` (an arm whose alpha is
    'selected') the alpha comes from that file and ``unlearn_cfg`` must not set one; if
    ``grid_twins`` (alpha text -> grid arm dir, same config but alpha) holds the selected alpha,
    that model is copied instead of trained again (unlearning is deterministic). With
    ``unlearn.processes`` > 1 the job launches that many sharded workers (one per allocated GPU,
    qunlearn.distributed), each of which runs this function again; rank 0 writes the outputs."""
    import resource

    import torch

    from . import distributed
    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model
    from .selection import selected_alpha
    from .unlearn.loop import build_method, unlearn

    called = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items() if k in _UNLEARN_ARGS}
    started = time.time()
    runtime.seed_everything(seed, threads)
    inputs = {"base": base_dir, "data": data_dir}
    if prepared_dir is not None:
        inputs["prepared"] = prepared_dir
    if selection_json is not None:
        if "alpha" in unlearn_cfg:
            raise ValueError("unlearn: an arm with a selected alpha must not also set alpha")
        unlearn_cfg = {**unlearn_cfg, "alpha": selected_alpha(selection_json)}
        inputs["selection"] = selection_json
    cfg = from_dict(UnlearnConfig, unlearn_cfg, "unlearn")
    twin = (grid_twins or {}).get(fmt_num(cfg.alpha))  # the grid arm's path text of this alpha
    if twin is not None:
        return _copy_twin(twin, out_dir, cfg, seed, {**inputs, "twin": twin}, started)
    spec = registries.METHODS.get(cfg.method, "unlearn.method")
    if cfg.processes > 1 and not distributed.in_worker() and not spec.gradient_free:
        n = distributed.allocated_processes(cfg.processes)
        distributed.launch(n, {**called, "grid_twins": None, "progress": False}, Path(out_dir).parent)
        return runtime.read_json(Path(out_dir) / "meta.json")
    rank, world = distributed.rank_world()
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir, device=torch.device(device) if device else None)
    forget = muse_format.read_texts(data_dir, "raw", "forget")
    # D_r only for a method with a retain term: GA and NPO run on data without raw/retain1
    retain = muse_format.read_texts(data_dir, "raw", "retain1") if spec.needs_retain else []
    extra = {split: muse_format.read_texts(data_dir, "raw", split) for split in spec.reads_splits}
    loop_started = time.time()
    method = build_method(cfg)
    history = unlearn(
        model,
        tok,
        forget,
        retain,
        cfg,
        seed,
        max_length,
        progress,
        str(prepared_dir) if prepared_dir else None,
        method=method,
        extra_texts=extra,
    )
    scale = {
        "processes": world,
        "seconds_per_step": round((time.time() - loop_started) / max(1, history["steps"]), 4),
        "peak_rss_mb": _gather_objects(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
    }
    if torch.cuda.is_available():  # GPU-only branch (not yet run on a GPU)
        scale["peak_gpu_mb"] = _gather_objects(torch.cuda.max_memory_allocated() / 2**20)
    if world > 1:
        weights = distributed.full_state_dict(model)  # every rank takes part; rank 0 gets them
        if rank != 0:
            return {}
        model = load_model(base_dir, device=torch.device("cpu"))
        model.load_state_dict(weights)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        _save_artifacts(method.artifacts(), tmp)
        meta = runtime.build_meta("unlearn", to_dict(cfg), seed, inputs, started, {"history": history, "scale": scale})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def _save_artifacts(artifacts: dict, out_dir: Path) -> None:
    """A method's extra files (hook ``artifacts``: name -> (tensors, metadata)), as safetensors."""
    from safetensors.torch import save_file

    for name, (tensors, metadata) in artifacts.items():
        save_file(tensors, str(Path(out_dir) / name), metadata=metadata)


_UNLEARN_ARGS = (
    "base_dir",
    "data_dir",
    "out_dir",
    "unlearn_cfg",
    "max_length",
    "seed",
    "threads",
    "progress",
    "selection_json",
    "grid_twins",
    "prepared_dir",
)


def prepare_method(
    base_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    prepare_cfg: dict,
    max_length: int,
    seed: int,
    threads: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict:
    """The preparatory model of a method whose spec names a ``preparation`` (e.g. the task vector's
    fine-tune on D_f): the method's ``preparation`` hook gives the training config and trainer, the
    unlearning loop runs them on the target; ``out_dir`` holds the model and ``meta.json``.
    ``prepare_cfg``: Experiment.prepare_params (the method's arms' params without alpha, lr,
    epochs and loss variant)."""
    import torch

    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model
    from .unlearn.loop import build_method, unlearn

    started = time.time()
    runtime.seed_everything(seed, threads)
    cfg = from_dict(UnlearnConfig, prepare_cfg, "prepare")
    method = build_method(cfg)
    if not method.spec.preparation:
        raise ValueError(f"prepare_method: {cfg.method!r} has no preparation (spec trait)")
    train_cfg, trainer = method.preparation(cfg)
    if train_cfg.processes > 1:
        raise NotImplementedError("prepare_method: unlearn.processes > 1 (sharded preparation) is not supported yet")
    tok = load_tokenizer(base_dir)
    model = load_model(base_dir, device=torch.device(device) if device else None)
    forget = muse_format.read_texts(data_dir, "raw", "forget")
    retain = muse_format.read_texts(data_dir, "raw", "retain1") if trainer.spec.needs_retain else []
    history = unlearn(model, tok, forget, retain, train_cfg, seed, max_length, progress, method=trainer)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        meta = runtime.build_meta(
            "prepare_method",
            {**to_dict(cfg), "preparation": method.spec.preparation, "training": to_dict(train_cfg)},
            seed,
            {"base": base_dir, "data": data_dir},
            started,
            {"history": history},
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def _gather_objects(value) -> list:
    """``[value of rank 0, rank 1, ...]`` (``[value]`` in one process)."""
    import torch.distributed as dist

    from .distributed import rank_world

    world = rank_world()[1]
    if world == 1:
        return [round(value, 1)]
    out = [None] * world
    dist.all_gather_object(out, round(value, 1))
    return out


def _copy_twin(twin: str | Path, out_dir: str | Path, cfg, seed: int, inputs: dict, started: float) -> dict:
    twin_meta = runtime.read_json(Path(twin) / "meta.json", "an unlearning job's meta.json", keys=("config",))
    if to_dict(from_dict(UnlearnConfig, twin_meta["config"], f"{twin}/meta.json config")) != to_dict(cfg):
        raise ValueError(f"{twin}: its unlearning config differs from this arm's, cannot stand in for it")
    log.info("selected alpha %g: copying the grid arm %s (same config, deterministic)", cfg.alpha, twin)
    with runtime.atomic_dir(out_dir) as tmp:
        for f in Path(twin).iterdir():
            if f.name != "meta.json":
                shutil.copy2(f, tmp / f.name)
        meta = runtime.build_meta(
            "unlearn",
            to_dict(cfg),
            seed,
            inputs,
            started,
            {"history": twin_meta.get("history"), "copied_from": str(twin)},
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def attack_model(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    attack_cfg: dict,
    max_length: int,
    seed: int,
    threads: int | None = None,
    target_dir: str | Path | None = None,
    device: str | None = None,
) -> dict:
    """Apply one point of a recovery attack to the model in ``model_dir`` (qunlearn.attacks).
    ``attack_cfg``: {attack, point (the id's key -> value text), settings (outside the grid)}.
    meta.json records the statistics the attack returns and what it read (``reads``: split,
    records, sha256), so a reader can check that e.g. relearning read only its declared split."""
    import torch

    from .attacks.base import AttackContext
    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model

    started = time.time()
    runtime.seed_everything(seed, threads)
    name = attack_cfg["attack"]
    spec = registries.ATTACKS.get(name, "attack")
    grid = getattr(spec.settings, "GRID", ())
    settings = spec.resolve({k: v for k, v in attack_cfg["settings"].items() if k not in grid}, f"attacks.runs.{name}")
    point = {str(k): str(v) for k, v in attack_cfg["point"].items()}
    keys = list(spec.settings().points()[0])
    if list(point) != keys:
        raise ValueError(f"attack {name}: point {point} must have the keys {keys}")
    inputs = {"model": model_dir, "data": data_dir}
    dev = torch.device(device) if device else None
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device=dev)
    target = None
    if spec.needs_target:
        if target_dir is None:
            raise ValueError(f"attack {name}: needs the released target (target_dir)")
        target = load_model(target_dir, device=dev)
        inputs["target"] = target_dir
    ctx = AttackContext(
        data_dir=Path(data_dir), tokenizer=tok, seed=seed, max_length=max_length, device=dev, target=target
    )
    stats = spec.load()(spec, settings, point).apply(model, ctx)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        config = {"attack": name, "point": point, "settings": to_dict(settings)}
        meta = runtime.build_meta("attack", config, seed, inputs, started, {"stats": stats, "reads": ctx.reads})
        runtime.write_json_atomic(tmp / "meta.json", meta)
    log.info("attack %s %s: %s", name, point, stats)
    return meta


def metric_groups(eval_cfg: dict) -> dict:
    """The optional metric groups in an evaluate job's params (``Experiment.evaluate_params``):
    enabled_by -> settings, resolved by the group's settings class."""
    out = {}
    for spec in registries.METRICS.specs():
        if spec.enabled_by and spec.enabled_by in eval_cfg and spec.enabled_by not in out:
            out[spec.enabled_by] = spec.resolve(eval_cfg[spec.enabled_by], f"datasets.<dataset>.{spec.enabled_by}")
    return out


def evaluate_model(
    model_dir: str | Path,
    data_dir: str | Path,
    out_json: str | Path,
    scheme: dict,
    eval_cfg: dict,
    seed: int,
    threads: int | None = None,
    scheme_name: str = "scheme",
    progress: bool = True,
    simulate: bool = False,
) -> dict:
    """Quantize a model as ``scheme`` says and compute every metric; keeps per-item outputs.

    For calibrated schemes (GPTQ, AWQ) ``model_dir`` is the quantize rule's checkpoint, already
    holding the deployed weights. ``simulate`` (not used by the workflow) evaluates bitsandbytes
    schemes with their exact dequantized dense weights instead of the bnb modules (docs/measurements.md compares).
    """
    from .data.tokenizer import load_tokenizer
    from .evaluate.runner import evaluate_all
    from .models import load_model
    from .quantize import load_quantized, quantize_model

    started = time.time()
    runtime.seed_everything(seed, threads)
    scfg = Scheme.from_config(scheme_name, scheme)
    groups = metric_groups(eval_cfg)
    ecfg = from_dict(EvalConfig, {k: v for k, v in eval_cfg.items() if k not in groups}, "evaluate")
    tok = load_tokenizer(model_dir)
    if scfg.calibrated:
        qmeta = runtime.read_json(
            Path(model_dir) / "meta.json", "the quantize job's meta.json", keys=("config", "quantization")
        )
        if qmeta.get("config", {}).get("scheme") != scfg.resolved():
            raise ValueError(
                f"{model_dir}/meta.json: quantized with {qmeta.get('config', {}).get('scheme')}, "
                f"but quantize.schemes.{scheme_name} is {scfg.resolved()}"
            )
        model = load_model(model_dir)
        # the calibration's duration stays in the quantize job's meta.json: the evaluation holds content only
        qinfo = {**{k: v for k, v in qmeta["quantization"].items() if k != "calibrate_s"}, "checkpoint": str(model_dir)}
    elif simulate:
        model = load_model(model_dir)
        qinfo = quantize_model(model, scfg)
    else:
        model, qinfo = load_quantized(model_dir, scfg)
    if deploy.marker(model_dir) is not None:  # the quantized base with its full-precision adapter on top
        qinfo["deployment"] = deploy.attach(model, model_dir)
    result = evaluate_all(model, tok, data_dir, ecfg, progress, groups)
    out = {
        "model_dir": str(model_dir),
        "scheme": scheme_name,
        "quantization": qinfo,
        **result,
        "meta": runtime.build_meta(
            "evaluate",
            {"scheme": scfg.resolved(), "evaluate": {**to_dict(ecfg), **{k: to_dict(v) for k, v in groups.items()}}},
            seed,
            {"model": model_dir, "data": data_dir},
            started,
        ),
    }
    runtime.write_json_atomic(out_json, out)
    return out


def quantize_checkpoint(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    scheme: dict,
    seed: int,
    threads: int | None = None,
    scheme_name: str = "scheme",
) -> dict:
    """Calibrate and quantize one model (GPTQ/AWQ); write the dense deployed weights
    (``model.safetensors``, loadable as any checkpoint), the integer codes, scales and zero points
    (``quant_codes.safetensors``), the tokenizer and ``meta.json``."""
    from safetensors.torch import save_file

    from .data.tokenizer import load_tokenizer
    from .models import load_model, save_model
    from .quantize import implementation
    from .quantize.llmc import calibration_texts

    started = time.time()
    scfg = Scheme.from_config(scheme_name, scheme)
    if not scfg.calibrated:
        raise ValueError(
            f"quantize.schemes.{scheme_name}: quantizer {scfg.quantizer!r} needs no calibration "
            "(it is applied on the fly by evaluate)"
        )
    s = scfg.resolved()
    runtime.seed_everything(s["calibration_seed"], threads)
    import torch

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device=torch.device("cpu"))
    split = s["calibration_split"]
    texts = calibration_texts(
        muse_format.read_texts(data_dir, "raw", split), s["calibration_samples"], s["calibration_seed"]
    )
    t0 = time.time()
    codes, info = implementation(scfg).calibrate(model, tok, texts, scfg)
    info["calibration"]["split"] = f"raw/{split}"
    info["calibrate_s"] = round(time.time() - t0, 3)
    # Save through a freshly loaded copy: llmcompressor wraps the calibrated model's save_pretrained
    # (compressed format, recipe.yaml); ours is a plain dense checkpoint (strict: no extra tensors).
    plain = load_model(model_dir, device=torch.device("cpu"))
    plain.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()}, strict=True)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(plain, tok, tmp)
        save_file(
            {f"{name}.{k}": v for name, d in codes.items() for k, v in d.items()}, str(tmp / "quant_codes.safetensors")
        )
        deploy.copy_marker(model_dir, tmp)  # a deployment's adapter rides on its quantized base
        meta = runtime.build_meta(
            "quantize",
            {"scheme": s},
            s["calibration_seed"],
            {"model": model_dir, "data": data_dir},
            started,
            {"scheme_name": scheme_name, "quantization": info},
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def analyse_weights(
    target_dir: str | Path,
    unlearned_dir: str | Path,
    out_dir: str | Path,
    schemes: dict[str, dict],
    quant_dirs: dict[str, tuple[str, str]] | None = None,
) -> dict:
    """Weight change of one unlearned model against its released target, under every scheme of
    its dataset: writes ``out_dir/<scheme>.json`` (weights loaded once per job)."""
    from .analysis import load_pair, weight_change

    quant_dirs = quant_dirs or {}
    weights = load_pair(target_dir, unlearned_dir)
    results = {}
    with runtime.atomic_dir(out_dir) as tmp:
        for name, raw in schemes.items():
            started = time.time()
            scfg = Scheme.from_config(name, raw)
            tq, uq = quant_dirs.get(name, (None, None))
            result = weight_change(target_dir, unlearned_dir, scfg, tq, uq, weights=weights)
            inputs = {"target": target_dir, "unlearned": unlearned_dir}
            if tq is not None:
                inputs.update(target_quant=tq, unlearned_quant=uq)
            results[name] = {
                "scheme": name,
                "nominal_bits": scfg.nominal_bits,
                **result,
                "meta": runtime.build_meta("analysis", {"scheme": scfg.resolved()}, None, inputs, started),
            }
            runtime.write_json_atomic(tmp / f"{name}.json", results[name])
    return results
