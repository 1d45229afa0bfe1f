"""Unlearned models made elsewhere (``datasets.<name>.external.<model name>``; docs "Bring your own
unlearned model"): a full Hugging Face checkpoint (hub id + revision, or a local directory, e.g. one
saved by open-unlearning) or a peft adapter on the dataset's released target.

Rule ``fetch_external`` turns each into ``results/<dataset>/models/external/<name>/``, a dense
safetensors checkpoint with the dataset's tokenizer like every other model directory, so evaluate,
quantize and analysis take model id ``external/<name>`` as they take an unlearned arm. An adapter is
applied to the target with peft and merged (``merge_and_unload``, in float32): the checkpoint is the
merged deployment.

What is checked (each failure names the model and what is wrong):

* files (also at config time for local sources, torch-free): safetensors weights (a ``.bin``-only
  checkpoint or adapter is refused, naming the file), ``config.json`` of a checkpoint,
  ``adapter_config.json`` of an adapter;
* architecture: the checkpoint's config against the target's (:data:`ARCH_KEYS`), then every
  saved tensor's name and shape against the target's;
* tokenizer: when the source ships one, its vocabulary and bos/eos/unk tokens against the dataset's;
* remote code runs only with ``trust_remote_code: true``.

meta.json records the source, the configured revision, the resolved hub commit and the sha256 of
every source file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

from . import runtime
from .config import ConfigError

log = logging.getLogger(__name__)

# config.json fields that must equal the target's (the tensors' names and shapes are compared after)
ARCH_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "tie_word_embeddings",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# what is downloaded from the hub: never pickled weights, never code unless trust_remote_code
HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken"]
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExternalModelError(ConfigError):
    """An external model cannot be used as configured; the message names it and what is wrong."""


def who(dataset: str, name: str) -> str:
    return f"external model {name!r} (datasets.{dataset}.external.{name})"


def local_source(spec: dict) -> Path | None:
    """The local directory of a source, or None for a hub id. An ``adapter`` is local when it is a
    directory or does not look like a hub id (``owner/name``), as transformers decides."""
    if spec.get("path"):
        return Path(spec["path"]).expanduser()
    adapter = spec.get("adapter")
    if adapter and (Path(adapter).expanduser().is_dir() or not _HUB_ID.match(adapter)):
        return Path(adapter).expanduser()
    return None


def _pickled(source: Path) -> list[str]:
    return sorted(p.name for p in source.iterdir() if p.suffix in PICKLE_SUFFIXES)


def check_files(source: Path, kind: str, name: str) -> list[Path]:
    """The files of a checkpoint or adapter directory that define it (weights and configs), or an
    ExternalModelError naming the model (``name``: :func:`who`) and the missing or refused file."""
    if not source.is_dir():
        raise ExternalModelError(f"{name}: {source} is not a directory")
    if kind == "adapter":
        config = source / "adapter_config.json"
        if not config.is_file():
            raise ExternalModelError(
                f"{name}: {source} has no adapter_config.json (a peft adapter directory holds "
                "adapter_config.json and adapter_model.safetensors)"
            )
        weights = sorted(source.glob("adapter_model*.safetensors"))
        if not weights:
            pickled = [f for f in _pickled(source) if f.startswith("adapter_model")] or _pickled(source)
            raise ExternalModelError(
                f"{name}: {source} has no adapter_model.safetensors"
                + (
                    f" (only {', '.join(pickled)}: pickled weights are not loaded; re-save with safetensors)"
                    if pickled
                    else ""
                )
            )
        return [config, *weights]
    config = source / "config.json"
    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        pickled = _pickled(source)
        raise ExternalModelError(
            f"{name}: {source} has no *.safetensors weights"
            + (
                f" (only {', '.join(pickled)}: pickled weights are not loaded; convert them once with "
                "save_pretrained(..., safe_serialization=True))"
                if pickled
                else ""
            )
        )
    if not config.is_file():
        raise ExternalModelError(f"{name}: {source} has no config.json (a Hugging Face checkpoint directory)")
    index = source / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (source / s).is_file()]
        if missing:
            raise ExternalModelError(f"{name}: {index} names shards that are missing: {', '.join(missing)}")
    return [config, *([index] if index.is_file() else []), *weights]


def check_config(spec: dict, dataset: str, name: str) -> None:
    """Config-time checks of one external model (torch-free): a local source's files."""
    source = local_source(spec)
    if source is not None:
        check_files(source, "adapter" if spec.get("adapter") else "checkpoint", who(dataset, name))


def _download(repo: str, revision: str | None, name: str, code: bool) -> Path:
    """A hub repo's snapshot without pickled weights (HUB_PATTERNS; ``*.py`` only with ``code``:
    trust_remote_code); hub errors name the model."""
    from huggingface_hub import snapshot_download

    patterns = HUB_PATTERNS + (["*.py"] if code else [])
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as err:  # network, gated repo, unknown revision
        raise ExternalModelError(
            f"{name}: cannot download {repo!r} at revision {revision!r} ({type(err).__name__}: {err}). "
            f"Download it where there is network (huggingface-cli download {repo} --local-dir DIR), copy "
            "DIR here and configure path: DIR (or adapter: DIR), or run with HF_HUB_OFFLINE=1 and a "
            "filled HF_HOME cache."
        ) from None


def check_architecture(ext_config, target_config, name: str, target_dir) -> None:
    diffs = [
        f"{k} {getattr(ext_config, k, None)!r} (target: {getattr(target_config, k, None)!r})"
        for k in ARCH_KEYS
        if getattr(ext_config, k, None) != getattr(target_config, k, None)
    ]
    if diffs:
        raise ExternalModelError(
            f"{name}: its architecture does not match the target's ({target_dir}/config.json): " + "; ".join(diffs)
        )


def check_tokenizer(tok, ref, name: str, ref_dir) -> None:
    """The source's tokenizer against the dataset's: same vocabulary (token -> id) and bos/eos/unk."""
    problems = []
    vocab, ref_vocab = tok.get_vocab(), ref.get_vocab()
    if vocab != ref_vocab:
        extra = sorted(set(vocab) - set(ref_vocab))
        missing = sorted(set(ref_vocab) - set(vocab))
        moved = sorted(t for t in set(vocab) & set(ref_vocab) if vocab[t] != ref_vocab[t])
        problems.append(
            f"vocabulary differs ({len(vocab)} vs {len(ref_vocab)} tokens; {len(extra)} not in the dataset's, "
            f"{len(missing)} missing, {len(moved)} with other ids; e.g. {(extra + missing + moved)[:3]})"
        )
    for attr in SPECIAL_TOKENS:
        a, b = getattr(tok, attr, None), getattr(ref, attr, None)
        if a != b:
            problems.append(f"{attr} {a!r} (dataset's: {b!r})")
    if problems:
        raise ExternalModelError(
            f"{name}: its tokenizer does not match the dataset's ({ref_dir}): " + "; ".join(problems)
        )


def tensor_shapes(model_dir: str | Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a checkpoint's safetensors files (headers only)."""
    from safetensors import safe_open

    shapes = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            shapes |= {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    return shapes


def check_tensors(out_dir, target_dir, name: str) -> None:
    mine, theirs = tensor_shapes(out_dir), tensor_shapes(target_dir)
    if mine != theirs:
        only = sorted(set(mine) ^ set(theirs))
        shape = sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])
        raise ExternalModelError(
            f"{name}: its tensors do not match the target's ({target_dir}): "
            f"{len(only)} names in one only (e.g. {only[:3]}), {len(shape)} with other shapes "
            f"(e.g. {[(k, mine[k], theirs[k]) for k in shape[:3]]})"
        )


def _load_error(err: Exception, name: str, source, trust_remote_code: bool) -> ExternalModelError:
    text = f"{type(err).__name__}: {err}"
    if not trust_remote_code and ("trust_remote_code" in text or "custom code" in text):
        text += " (it needs remote code: set trust_remote_code: true only if you trust it)"
    return ExternalModelError(f"{name}: cannot load {source} ({text})")


def fetch_external(
    spec: dict, dataset: str, name: str, target_dir: str | Path, data_dir: str | Path, out_dir: str | Path
) -> dict:
    """Check one external model and write it as a dense checkpoint into ``out_dir`` (see the module
    docstring). ``spec``: the ``ExternalModelConfig`` mapping (``Experiment.external_params``)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .data.tokenizer import load_tokenizer
    from .models import count_parameters, save_model

    started = time.time()
    label = who(dataset, name)
    kind = "adapter" if spec.get("adapter") else "checkpoint"
    trust = bool(spec.get("trust_remote_code", False))
    source = local_source(spec)
    commit = None
    if source is None:
        source = _download(spec.get("hub_id") or spec["adapter"], spec.get("revision"), label, trust)
        commit = source.name  # the hub cache's snapshots/<commit>
    files = check_files(source, kind, label)
    target_dir, tok_dir = Path(target_dir), Path(data_dir) / "tokenizer"
    target_config = AutoConfig.from_pretrained(str(target_dir))
    dtype_name = spec.get("dtype") or str(getattr(target_config, "dtype", None) or "float32").replace("torch.", "")
    dtype = getattr(torch, dtype_name)
    ref_tok = load_tokenizer(tok_dir)
    tokenizer = "none shipped (the dataset's is used)"
    if any((source / f).is_file() for f in TOKENIZER_FILES):
        try:
            tok = AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust)
        except Exception as err:
            raise _load_error(err, label, source, trust) from None
        check_tokenizer(tok, ref_tok, label, tok_dir)
        tokenizer = "matches the dataset's"
    extra: dict = {}
    if kind == "checkpoint":
        try:
            ext_config = AutoConfig.from_pretrained(str(source), trust_remote_code=trust)
        except Exception as err:
            raise _load_error(err, label, source, trust) from None
        check_architecture(ext_config, target_config, label, target_dir)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(source), dtype=dtype, use_safetensors=True, trust_remote_code=trust
            )
        except Exception as err:
            raise _load_error(err, label, source, trust) from None
        inputs = {"data": tok_dir, "target_config": target_dir / "config.json"}
    else:
        from peft import PeftModel

        adapter_config = json.loads((source / "adapter_config.json").read_text())
        base = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32, use_safetensors=True)
        try:
            peft_model = PeftModel.from_pretrained(base, str(source), is_trainable=False)
        except Exception as err:
            raise ExternalModelError(
                f"{label}: the adapter at {source} does not fit the dataset's target ({target_dir}): "
                f"{type(err).__name__}: {err}"
            ) from None
        if not hasattr(peft_model, "merge_and_unload"):
            raise ExternalModelError(
                f"{label}: peft_type {adapter_config.get('peft_type')!r} cannot be merged into the weights"
            )
        model = peft_model.merge_and_unload().to(dtype)
        extra["adapter"] = {
            k: adapter_config.get(k)
            for k in ("peft_type", "r", "lora_alpha", "target_modules", "base_model_name_or_path")
        }
        inputs = {"data": tok_dir, "target": target_dir}
    if model.config.pad_token_id is None:
        model.config.pad_token_id = ref_tok.pad_token_id
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, ref_tok, tmp)
        check_tensors(tmp, target_dir, label)
        meta = runtime.build_meta(
            "fetch_external",
            spec,
            None,
            inputs,
            started,
            {
                "external": {
                    "name": name,
                    "dataset": dataset,
                    "kind": kind,
                    "source": str(source),
                    "revision": spec.get("revision"),
                    "commit": commit,
                    "files": {str(f.relative_to(source)): runtime.hash_path(f) for f in files},
                    "tokenizer": tokenizer,
                    **extra,
                },
                "dtype": dtype_name,
                "n_parameters": count_parameters(model),
                "model_type": model.config.model_type,
            },
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    log.info("%s: %s from %s -> %s", label, kind, source, out_dir)
    return meta
