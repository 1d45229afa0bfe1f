"""Evaluation and unlearning data as MUSE and the paper do them (issue 14, part 5): the VerbMem
reference, generation that does not depend on the batch in half precision, the packed unlearning
data, the release's sampled VerbMem. Micro models, seconds."""

import pytest
import torch

from qunlearn.batching import encode, encode_packed
from qunlearn.config import ConfigError, EvalConfig, ModelConfig, UnlearnConfig, from_dict
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.evaluate.generation import generation_batches, greedy_generate
from qunlearn.evaluate.verbmem import reference, verbmem
from qunlearn.models import build_tiny_llama

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40)) + "." for i in range(30)]
    return train_tokenizer(texts, 400, tmp_path_factory.mktemp("tok"))


class CharTokenizer:
    """One id per character, BOS = 1 (the packing test counts ids by hand)."""

    bos_token_id = 1

    def __call__(self, text, add_special_tokens=True):
        ids = [ord(c) for c in text]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}


def test_verbmem_reference_is_bos_plus_n_minus_one_text_tokens_as_muse(tok):
    gt = " ".join(WORDS * 20)
    text_ids = tok(gt, add_special_tokens=False)["input_ids"]
    assert len(text_ids) > 200 and tok(gt)["input_ids"][0] == tok.bos_token_id
    ref = reference(tok, gt, 128)
    assert tok(ref, add_special_tokens=False)["input_ids"] == text_ids[:127]
    assert ref == tok.decode(text_ids[:127])


def test_packed_data_joins_by_a_blank_line_and_wraps_the_last_chunk():
    t = CharTokenizer()
    chunks = [c.tolist() for c in encode_packed(t, ["ab", "cde"], 4)]  # "ab\n\ncde": 7 ids
    a, b, nl, c, d, e = (ord(x) for x in "ab\ncde")
    assert chunks == [[1, a, b, nl], [1, nl, c, d], [1, e, 1, a]]
    assert all(len(x) == 4 for x in chunks)
    # per-document (the default): each document alone, BOS ... EOS, no wrap
    assert [c.tolist() for c in encode_packed(t, ["abc"], 4)] == [[1, a, b, ord("c")]]


def test_data_format_key_selects_the_encoding_and_rejects_unknown_values():
    assert UnlearnConfig().data_format == "documents"
    with pytest.raises(ConfigError, match="data_format"):
        from_dict(UnlearnConfig, {"data_format": "chunks"}, "unlearn")
    assert [c.tolist() for c in encode(CharTokenizer(), ["ab", "cde"], 4, "packed")][2] == [1, ord("e"), 1, ord("a")]


def test_generation_batches():
    lengths = [5, 3, 5, 4, 3, 5]
    by_len = generation_batches(lengths, 2, "by_length")
    assert all(len({lengths[i] for i in b}) == 1 for b in by_len)
    assert sorted(i for b in by_len for i in b) == list(range(6)) and max(map(len, by_len)) == 2
    assert generation_batches(lengths, 2, "per_item") == [[0], [2], [5], [3], [1], [4]]
    assert generation_batches(lengths, 4, "padded") == [[0, 2, 5, 3], [1, 4]]


def _prompts():
    return [" ".join(WORDS[j % len(WORDS)] for j in range(i, i + 3 + i % 4)) for i in range(12)]


def test_by_length_batches_reproduce_one_prompt_at_a_time_in_bf16(tok):
    """scripts/benchmark_generation_batching.py measures the same at the default model size (padded
    batches change 9 of 20 VerbMem continuations there, by_length none)."""
    model = build_tiny_llama(
        ModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=128), tok, 0
    ).to(torch.bfloat16)
    model.eval()
    prompts = _prompts()[:8]
    alone = greedy_generate(model, tok, prompts, 16, 8, batching="per_item")
    assert greedy_generate(model, tok, prompts, 16, 8, batching="by_length") == alone


def test_half_precision_generation_is_a_checked_setting():
    assert EvalConfig().half_precision_generation == "padded" and EvalConfig().verbmem_decoding == "greedy"
    with pytest.raises(ConfigError, match="half_precision_generation"):
        from_dict(EvalConfig, {"half_precision_generation": "exact"}, "evaluate")
    with pytest.raises(ConfigError, match="verbmem_decoding"):
        from_dict(EvalConfig, {"verbmem_decoding": "sample"}, "evaluate")


def test_paper_code_verbmem_samples_seeded(tok):
    model = build_tiny_llama(
        ModelConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_length=128), tok, 0
    ).eval()
    items = [{"prompt": p, "gt": "alpha beta gamma"} for p in _prompts()[:4]]
    greedy = verbmem(model, tok, items, EvalConfig(verbmem_max_new_tokens=16))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(verbmem(model, tok, items, EvalConfig(verbmem_max_new_tokens=16, verbmem_decoding="paper_code")))
    assert [it["output"] for it in runs[0]["items"]] == [it["output"] for it in runs[1]["items"]]
    assert [it["output"] for it in runs[0]["items"]] != [it["output"] for it in greedy["items"]]
