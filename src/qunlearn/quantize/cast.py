"""Float casts (fp16, bf16): the half-precision deployments the paper compares against.

Every parameter (embeddings and norms included) is cast to the dtype and the model *runs* in it:
generation and log-probs are computed in fp16/bf16 on the CPU, as a half-precision deployment
would compute them (token log-probs are converted to fp32 only for the log-softmax, see
evaluate/generation.py).
"""

from __future__ import annotations

import torch

from .registry import register, target_linears

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@register("cast")
class CastQuantizer:
    def apply(self, model, scheme) -> dict:
        dtype = DTYPES[scheme.setting("dtype")]
        n = len(target_linears(model, include_lm_head=True))
        model.to(dtype)
        return {"quantizer": "cast", "dtype": scheme.setting("dtype"), "compute_dtype": str(dtype),
                "n_layers": n, "scope": "all parameters"}

    def codes(self, weight: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
        """The stored half-precision values are the 'codes' (changed = a different fp16/bf16 value)."""
        return {"codes": weight.to(DTYPES[scheme.setting("dtype")])}
