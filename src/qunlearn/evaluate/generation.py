"""Batched greedy generation and per-token log-probs (one model load, many items)."""

from __future__ import annotations

import torch


def model_max_length(model) -> int:
    """The longest sequence the model takes (prompt + generated tokens are capped at it)."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


def _batches(order: list[int], size: int):
    for i in range(0, len(order), size):
        yield order[i : i + size]


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
) -> list[str]:
    """Greedy continuations (new text only), batched with left padding; items sorted by length."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    outputs: list[str] = [""] * len(prompts)
    tokenizer.padding_side = "left"
    for idx in tqdm(list(_batches(order, batch_size)), desc="generate", disable=not progress, leave=False):
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
        enc = {k: v.to(device) for k, v in enc.items()}
        new_tokens = max_new_tokens
        if max_length is not None:
            new_tokens = max(1, min(max_new_tokens, max_length - enc["input_ids"].shape[1]))
        kwargs = dict(stop_strings=stop_strings, tokenizer=tokenizer) if stop_strings else {}
        out = model.generate(
            **enc,
            max_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
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
