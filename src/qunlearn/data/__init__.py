"""Data: the MUSE layout, the synthetic corpus and the tokenizer."""
