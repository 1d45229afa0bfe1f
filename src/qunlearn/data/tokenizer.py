"""A byte-level BPE tokenizer trained on the corpus, saved as a standard Hugging Face tokenizer.

Byte-level BPE round-trips every character (newlines included), so the KnowMem stop strings
("\\n\\n", "\\nQuestion") and ROUGE references survive decoding exactly, and the same evaluation code
runs unchanged on hub tokenizers (Llama-2's) later.

Pre-tokens are words, punctuation runs and whitespace runs, each on its own. Two reasons:
- a name is one token wherever it stands ("Kettering" before "?", "," or " "), so a tiny model
  learns one fact per (name, attribute), not one per surrounding punctuation;
- GPT-2's convention (leading space) would make the MUSE prompt "...Answer: " end in a lone space
  token that never precedes an answer word in training; here "Answer: " tokenizes the same way
  in the prompt and in the training text.
"""

from __future__ import annotations

from pathlib import Path

BOS, EOS, PAD = "<s>", "</s>", "<pad>"


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: str | Path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+|\s+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=4096
    )
    fast.padding_side = "left"  # generation pads on the left
    fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    from .. import runtime

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: tokenizer directory missing")
    runtime.check_hf_dir(path, ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"))
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as err:
        raise runtime.InputFileError(
            f"{path}: cannot load the tokenizer (expected a Hugging Face tokenizer directory, "
            f"tokenizer.json and tokenizer_config.json): {type(err).__name__}: {err}"
        ) from err
    if tok.pad_token is None:  # Llama-2: pad = eos
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok
