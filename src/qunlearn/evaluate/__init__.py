"""Evaluation: MUSE metrics M1-M4 on a (possibly quantized) model."""
