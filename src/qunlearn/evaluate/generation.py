"""Batched greedy generation and per-token log-probs (one model load, many items).

Batching and half precision: with left padding, a padded row's attention and matmuls run over a
different shape than the same prompt alone, and in bf16/fp16 the rounding of those reductions can
flip a greedy argmax, so a continuation depends on the batch it landed in (MUSE-News bf16 target:
VerbMem 97.2 at batch 8 or 32, 100.0 at batch 1, as MUSE generates). ``batching`` chooses:

- ``padded``: prompts sorted by length, batches of ``batch_size``, left-padded (the fastest; in
  fp32 the masked padding changes the logits by rounding far below the gaps greedy decoding decides);
- ``by_length``: only prompts of the same token length share a batch, so nothing is padded and every
  row is computed as it would be alone (up to the GEMM kernel's choice for the batch shape);
- ``per_item``: one prompt at a time, as MUSE does.

:func:`batching_for` picks ``padded`` for fp32 models and the configured
``evaluate.half_precision_generation`` for bf16/fp16 ones (docs/guide/schemes.md, "Generation in
half precision").
"""

from __future__ import annotations

import torch

BATCHING = ("padded", "by_length", "per_item")


def batching_for(model, half_precision_generation: str) -> str:
    """The batching of generation for ``model``: ``padded`` in fp32, the configured one otherwise."""
    if half_precision_generation not in BATCHING:
        raise ValueError(f"batching {half_precision_generation!r} unknown; use one of {', '.join(BATCHING)}")
    dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    return half_precision_generation if dtype in (torch.bfloat16, torch.float16) else "padded"


def model_max_length(model) -> int:
    """The longest sequence the model takes (prompt + generated tokens are capped at it)."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def _batches(order: list[int], size: int):
    for i in range(0, len(order), size):
        yield order[i : i + size]


def generation_batches(lengths: list[int], batch_size: int, batching: str = "padded") -> list[list[int]]:
    """Item indices per batch: longest first; ``by_length`` never mixes token lengths in a batch,
    ``per_item`` puts each item alone."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if batching == "padded":
        return list(_batches(order, batch_size))
    if batching == "per_item":
        return [[i] for i in order]
    if batching == "by_length":
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(lengths[i], []).append(i)
        return [b for n in sorted(groups, reverse=True) for b in _batches(groups[n], batch_size)]
    raise ValueError(f"batching {batching!r} unknown; use one of {', '.join(BATCHING)}")


@torch.no_grad()
def greedy_generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    stop_strings: list[str] | None = None,
    max_length: int | None = None,
    progress: bool = False,
    batching: str = "padded",
    temperature: float | None = None,
) -> list[str]:
    """Greedy continuations (new text only), batched as ``batching`` says (module docstring);
    ``temperature`` set: sampled at that temperature instead (the rest of the sampling settings
    from the model's generation config), from torch's global generator (seeded by the stage)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    outputs: list[str] = [""] * len(prompts)
    tokenizer.padding_side = "left"
    decoding = dict(do_sample=False) if temperature is None else dict(do_sample=True, temperature=temperature)
    batches = generation_batches(lengths, batch_size, batching)
    for idx in tqdm(batches, desc="generate", disable=not progress, leave=False):
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
        enc = {k: v.to(device) for k, v in enc.items()}
        new_tokens = max_new_tokens
        if max_length is not None:
            new_tokens = max(1, min(max_new_tokens, max_length - enc["input_ids"].shape[1]))
        kwargs = dict(stop_strings=stop_strings, tokenizer=tokenizer) if stop_strings else {}
        out = model.generate(
            **enc,
            max_new_tokens=new_tokens,
            num_beams=1,
            **decoding,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **kwargs,
        )
        gen = out[:, enc["input_ids"].shape[1] :]
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(gen[row], skip_special_tokens=True)
    return outputs


@torch.no_grad()
def token_logprobs(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> list[list[float]]:
    """log p(x_t | x_<t) for every token after the first, per text (truncated to max_length)."""
    device = next(model.parameters()).device
    tokenizer.padding_side = "right"
    result: list[list[float]] = [[] for _ in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for idx in _batches(order, batch_size):
        enc = tokenizer(
            [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=max_length
        )
        enc = {k: v.to(device) for k, v in enc.items()}
        logits = model(**enc).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = enc["input_ids"][:, 1:]
        lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        mask = enc["attention_mask"][:, 1:].bool()
        for row, i in enumerate(idx):
            result[i] = lp[row][mask[row]].cpu().tolist()
    tokenizer.padding_side = "left"
    return result
