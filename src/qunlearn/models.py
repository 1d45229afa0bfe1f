"""Building, saving and loading causal LMs (safetensors only, no remote code by default)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import runtime
from .config import ModelConfig


def pick_device() -> torch.device:
    """The allocated accelerator when there is one (CUDA_VISIBLE_DEVICES decides), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def build_tiny_llama(cfg: ModelConfig, tokenizer, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(
            f"model.hidden_size ({cfg.hidden_size}) must be divisible by model.num_heads ({cfg.num_heads})"
        )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=cfg.tie_word_embeddings,
    )
    return LlamaForCausalLM(config)


def load_model(path: str | Path, device: torch.device | None = None, dtype="auto", trust_remote_code: bool = False):
    """Load a causal LM from a directory written by ``save_pretrained`` (safetensors required).

    ``dtype="auto"``: as stored (our tiny models are float32; published bases are fetched in the
    configured dtype, e.g. bfloat16, and stay in it through unlearning and evaluation)."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: model directory missing")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no *.safetensors weights (only safetensors checkpoints are loaded)")
    runtime.check_hf_dir(path, ("config.json", "generation_config.json"))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except Exception as err:
        raise runtime.InputFileError(
            f"{path}: cannot load the model checkpoint (expected a save_pretrained directory with "
            f"config.json and safetensors weights): {type(err).__name__}: {err}"
        ) from err
    model.to(device or pick_device())
    model.eval()
    return model


def save_model(model, tokenizer, out_dir: str | Path) -> None:
    model.save_pretrained(str(out_dir), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
