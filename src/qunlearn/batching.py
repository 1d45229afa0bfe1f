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


def encode_packed(tokenizer, texts: list[str], max_length: int) -> list[torch.Tensor]:
    """MUSE's and the paper release's form of ``raw/forget.txt``: every document joined by a blank
    line, tokenized once without special tokens, cut into pieces of ``max_length - 1`` tokens, each
    prefixed with BOS; the last chunk, when short, is filled up to ``max_length`` with the start of
    the first (BOS included), so every chunk is full length."""
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("encode_packed: no text to train on")
    step = max_length - 1
    chunks = [[tokenizer.bos_token_id, *ids[i : i + step]] for i in range(0, len(ids), step)]
    if len(chunks[-1]) < max_length:
        chunks[-1] = (chunks[-1] + chunks[0])[:max_length]
    return [torch.tensor(c, dtype=torch.long) for c in chunks]


DATA_FORMATS = {"documents": encode_documents, "packed": encode_packed}


def encode(tokenizer, texts: list[str], max_length: int, data_format: str = "documents") -> list[torch.Tensor]:
    """The training examples of ``texts`` in ``unlearn.data_format`` (documents | packed)."""
    return DATA_FORMATS[data_format](tokenizer, texts, max_length)


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
