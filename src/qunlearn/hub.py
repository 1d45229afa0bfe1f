"""Published models and tokenizers (the model hub or a local directory), safetensors only.

A base model configured under ``datasets.<name>.pretrained.<base>`` (``hub_id`` + ``revision`` or
``path``) is copied into ``results/<dataset>/models/pretrained/<base>/`` in the configured dtype
with the dataset's tokenizer (pad = eos), so everything downstream (release, unlearn, evaluate)
reads one kind of directory. Remote code is never run unless ``trust_remote_code: true`` is set.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import runtime

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")


class HubUnavailableError(RuntimeError):
    """A model or tokenizer can be read neither from the hub nor from a local directory."""


def _advice(name: str, where: str) -> str:
    return (
        f"Provide {name} one of these ways: (1) `huggingface-cli download {name} --local-dir DIR` where "
        f"there is network, copy DIR here and set {where}.path: DIR (instead of hub_id); (2) fill the "
        f"hub cache once online (HF_HOME) and run with HF_HUB_OFFLINE=1; (3) make the hub reachable "
        f"(HF_ENDPOINT for a mirror, HF_TOKEN for gated repos)."
    )


def _source(spec: dict, where: str) -> str:
    if spec.get("path"):
        path = Path(spec["path"]).expanduser()
        if not path.is_dir():
            raise HubUnavailableError(f"{where}.path: {path} is not a directory")
        if not any(path.glob("*.safetensors")):
            raise HubUnavailableError(
                f"{where}.path: {path} has no *.safetensors weights (only safetensors checkpoints are loaded)"
            )
        return str(path)
    if not spec.get("hub_id"):
        raise HubUnavailableError(f"{where}: give hub_id or path")
    return spec["hub_id"]


def load_pretrained_tokenizer(
    name: str, revision: str | None = None, trust_remote_code: bool = False, where: str = "tokenizer"
):
    """A published tokenizer with pad = eos (Llama-2 has no pad token) and left padding."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise HubUnavailableError(
            f"{where}.pretrained: cannot load tokenizer {name!r} ({err}). "
            + _advice(name, where).replace(".path: DIR (instead of hub_id)", ".pretrained: DIR")
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def fetch_model(spec: dict, data_dir: str | Path, out_dir: str | Path, where: str = "pretrained") -> dict:
    """Copy one published base into ``out_dir`` (dtype, safetensors, the dataset's tokenizer, meta.json).

    ``spec``: {hub_id | path, revision, dtype, trust_remote_code} (plan.pretrained_base).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from .data.tokenizer import load_tokenizer
    from .models import count_parameters, save_model

    started = time.time()
    if spec.get("dtype", "bfloat16") not in DTYPES:
        raise ValueError(f"{where}.dtype: {spec.get('dtype')!r} unknown; use one of {DTYPES}")
    dtype = getattr(torch, spec.get("dtype", "bfloat16"))
    source = _source(spec, where)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            revision=spec.get("revision"),
            dtype=dtype,
            use_safetensors=True,
            trust_remote_code=bool(spec.get("trust_remote_code", False)),
        )
    except OSError as err:
        raise HubUnavailableError(
            f"{where}: cannot load {source!r} with safetensors weights ({err}). " + _advice(source, where)
        ) from None
    tok = load_tokenizer(Path(data_dir) / "tokenizer")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    inputs = {"data": Path(data_dir) / "tokenizer"}
    if spec.get("path"):
        inputs["model"] = Path(source)
    with runtime.atomic_dir(out_dir) as tmp:
        save_model(model, tok, tmp)
        meta = runtime.build_meta(
            "fetch_model",
            {k: spec.get(k) for k in ("hub_id", "path", "revision", "dtype", "trust_remote_code")},
            None,
            inputs,
            started,
            {"n_parameters": count_parameters(model), "model_type": model.config.model_type},
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta
