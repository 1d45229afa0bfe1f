"""Tokenised training examples and padded batches (shared by finetuning and unlearning)."""

from __future__ import annotations

import torch


def encode_documents(tokenizer, texts: list[str], max_length: int) -> list[torch.Tensor]:
    """bos + text + eos, cut into chunks of at most max_length tokens (the paper chunks raw text)."""
    chunks = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"] + [tokenizer.eos_token_id]
        for start in range(0, len(ids), max_length):
            piece = ids[start : start + max_length]
            if len(piece) > 1:
                chunks.append(torch.tensor(piece, dtype=torch.long))
    if not chunks:
        raise ValueError("encode_documents: no text to train on")
    return chunks


def collate(examples: list[torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels (-100 on padding)."""
    n = max(len(e) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), n), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e)] = e
        mask[i, : len(e)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    perm = torch.randperm(n, generator=generator).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}
