"""Float casts (fp16, bf16): the half-precision deployments the paper compares against.

Every parameter (embeddings and norms included) is cast to the dtype and the model *runs* in it:
generation and log-probs are computed in fp16/bf16 on the CPU, as a half-precision deployment
would compute them (token log-probs are converted to fp32 only for the log-softmax, see
evaluate/generation.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..plugins import QUANTIZERS, QuantizerSpec
from . import target_linears

if TYPE_CHECKING:
    import torch

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}  # setting -> torch dtype name


@dataclass
class CastSettings:
    dtype: str = "bf16"  # fp16 | bf16: every parameter cast, the model run in that dtype

    def validate(self, where: str) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"{where}.dtype: {self.dtype!r} unknown; use one of {', '.join(DTYPES)}")


SPEC = QUANTIZERS.register(
    QuantizerSpec(
        name="cast",
        settings=CastSettings,
        impl="qunlearn.quantize.cast:CastQuantizer",
        summary="every parameter cast to fp16 or bf16, the model run in that dtype",
        nominal_bits=16,
    )
)


def torch_dtype(scheme) -> torch.dtype:
    import torch

    return getattr(torch, DTYPES[scheme.setting("dtype")])


class CastQuantizer:
    def apply(self, model, scheme) -> dict:
        dtype = torch_dtype(scheme)
        n = len(target_linears(model, include_lm_head=True))
        model.to(dtype)
        return {
            "quantizer": "cast",
            "dtype": scheme.setting("dtype"),
            "compute_dtype": str(dtype),
            "n_layers": n,
            "scope": "all parameters",
        }

    def codes(self, weight: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
        """The stored half-precision values are the 'codes' (changed = a different fp16/bf16 value)."""
        return {"codes": weight.to(torch_dtype(scheme))}
