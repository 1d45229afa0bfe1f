"""bitsandbytes: LLM.int8() (``bnb_int8``), 4-bit FP4 (``bnb_fp4``, the paper code's 4-bit) and NF4
(``bnb_nf4``), with double quantization as an option of the 4-bit types.

Two ways to get a bnb model, both here:

* :meth:`load` (what evaluation uses) is the user's path: ``from_pretrained`` with a
  ``BitsAndBytesConfig`` on the CPU, so the model runs bitsandbytes' own ``Linear8bitLt`` /
  ``Linear4bit`` kernels. transformers keeps ``lm_head`` in full precision (as RTN does here).
  ``Linear4bit``'s CPU-only bf16 fast path (used on AVX512-BF16 CPUs) is switched off, so the
  4-bit layers compute as on a GPU: dequantize to fp32, dense matmul (machine-independent metrics).
* :meth:`apply` writes the *exact* bnb dequantization back into dense Linear weights
  (``Linear4bit`` dequantizes to the compute dtype and runs a dense matmul, so for 4-bit this is the
  same computation; LLM.int8 also quantizes the activations row-wise and keeps outlier feature
  columns (|x| > threshold) in 16 bit, which the dense simulation does not do). docs/measurements.md reports
  how far the two agree on the tiny model (scripts/benchmark_quantizers.py --compare-bnb).

:meth:`codes` gives the stored codes of one weight (int8 codes + row scales, or the 4-bit indices +
block absmax), with the same bnb functions the modules call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ConfigError
from ..plugins import QUANTIZERS, QuantizerSpec
from . import no_grad, target_linears

if TYPE_CHECKING:
    import torch

QUANT_TYPES = {"bnb_fp4": "fp4", "bnb_nf4": "nf4"}
SOURCE = "bitsandbytes (Dettmers et al. 2022, 2023)"


@dataclass
class Int8Settings:
    threshold: float = 6.0  # LLM.int8(): outlier threshold (the paper's 8-bit)


@dataclass
class FourBitSettings:
    blocksize: int = 64
    double_quant: bool = False

    def validate(self, where: str) -> None:
        if self.blocksize != 64:
            # bitsandbytes itself takes 64..4096, but transformers' BitsAndBytesConfig (the user's
            # loading path, which evaluation runs) has no blocksize argument: it always uses 64.
            raise ConfigError(f"{where}.blocksize: only 64 (what BitsAndBytesConfig loads with), got {self.blocksize}")


QUANTIZERS.register(
    QuantizerSpec(
        name="bnb_int8",
        settings=Int8Settings,
        impl="qunlearn.quantize.bnb:BnbInt8",
        summary="LLM.int8(): row-wise absmax int8 weights, outlier features in 16 bit (the paper's 8-bit)",
        source=SOURCE,
        nominal_bits=8,
    )
)
QUANTIZERS.register(
    QuantizerSpec(
        name="bnb_fp4",
        settings=FourBitSettings,
        impl="qunlearn.quantize.bnb:BnbFp4",
        summary="bitsandbytes 4-bit FP4, blockwise absmax (the paper code's 4-bit)",
        source=SOURCE,
        nominal_bits=4,
    )
)
QUANTIZERS.register(
    QuantizerSpec(
        name="bnb_nf4",
        settings=FourBitSettings,
        impl="qunlearn.quantize.bnb:BnbNf4",
        summary="bitsandbytes 4-bit NormalFloat (QLoRA), blockwise absmax",
        source=SOURCE,
        nominal_bits=4,
    )
)


def int8_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise absmax int8 codes, as ``Int8Params`` stores them (the weight is cast to fp16 first)."""
    import bitsandbytes.functional as F
    import torch

    cb, scb, _ = F.int8_vectorwise_quant(w.detach().contiguous().to(torch.float16))
    return cb, scb


def int8_dequantize(cb: torch.Tensor, scb: torch.Tensor) -> torch.Tensor:
    return cb.float() * (scb.float().unsqueeze(1) / 127.0)


def quantize_4bit(w: torch.Tensor, quant_type: str, blocksize: int, double_quant: bool):
    """Packed 4-bit weight + QuantState, as ``Params4bit`` makes them."""
    import bitsandbytes.functional as F

    return F.quantize_4bit(
        w.detach().contiguous(), blocksize=blocksize, compress_statistics=double_quant, quant_type=quant_type
    )


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The 4-bit indices of a packed uint8 tensor (high nibble first), first ``n`` of them."""
    import torch

    flat = packed.flatten()
    return torch.stack([flat >> 4, flat & 0x0F], dim=1).flatten()[:n]


class _BnbBase:
    def _bnb_config(self, scheme):
        raise NotImplementedError

    def load(self, model_dir, scheme):
        """The bnb-quantized model as a user gets it (``from_pretrained`` + ``BitsAndBytesConfig``)."""
        import torch
        from transformers import AutoModelForCausalLM

        from ..runtime import check_hf_dir

        check_hf_dir(model_dir, ("config.json", "generation_config.json"))  # names a truncated file
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            dtype=torch.float32,
            use_safetensors=True,
            device_map="cpu",
            quantization_config=self._bnb_config(scheme),
            trust_remote_code=False,
        )
        model.eval()
        import bitsandbytes as bnb

        names, repacked = [], 0
        for n, m in model.named_modules():
            if isinstance(m, (bnb.nn.Linear8bitLt, bnb.nn.Linear4bit)):
                names.append(n)
            if isinstance(m, bnb.nn.Linear4bit) and getattr(m, "support_avx512bf16_for_cpu", False):
                # On CPUs with AVX512-BF16, Linear4bit repacks its weight for a CPU kernel that
                # computes in bf16; elsewhere (and on GPUs) it dequantizes to the compute dtype and
                # runs a dense matmul. We keep the latter everywhere, so metrics do not depend on the
                # CPU's instruction set and equal the GPU deployment's computation.
                m.support_avx512bf16_for_cpu = False
                repacked += 1
        return model, {
            **self.summary(scheme),
            "n_layers": len(names),
            "deployed": "bitsandbytes modules",
            "cpu_bf16_fast_path_disabled_layers": repacked,
            "bitsandbytes": bnb.__version__,
        }


class BnbInt8(_BnbBase):
    def _bnb_config(self, scheme):
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=float(scheme.setting("threshold")))

    def summary(self, scheme) -> dict:
        return {
            "quantizer": "bnb_int8",
            "threshold": scheme.setting("threshold"),
            "weight_dtype": "int8",
            "scale": "row-wise absmax (fp16 weight)",
            "compute_dtype": "float32",
        }

    @no_grad
    def apply(self, model, scheme) -> dict:
        names = []
        for name, module in target_linears(model, include_lm_head=False).items():
            cb, scb = int8_codes(module.weight)
            module.weight.copy_(int8_dequantize(cb, scb).to(module.weight.dtype))
            names.append(name)
        return {**self.summary(scheme), "n_layers": len(names), "deployed": "dense dequantized weights"}

    def codes(self, weight: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
        cb, scb = int8_codes(weight)
        return {"codes": cb, "scale": scb}


class _Bnb4bit(_BnbBase):
    def _bnb_config(self, scheme):
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=QUANT_TYPES[scheme.quantizer],
            bnb_4bit_use_double_quant=bool(scheme.setting("double_quant")),
            bnb_4bit_compute_dtype=torch.float32,
        )

    def summary(self, scheme) -> dict:
        return {
            "quantizer": scheme.quantizer,
            "quant_type": QUANT_TYPES[scheme.quantizer],
            "blocksize": scheme.setting("blocksize"),
            "double_quant": scheme.setting("double_quant"),
            "compute_dtype": "float32",
        }

    @no_grad
    def apply(self, model, scheme) -> dict:
        import bitsandbytes.functional as F

        names = []
        for name, module in target_linears(model, include_lm_head=False).items():
            packed, state = quantize_4bit(
                module.weight.float(),
                QUANT_TYPES[scheme.quantizer],
                scheme.setting("blocksize"),
                scheme.setting("double_quant"),
            )
            module.weight.copy_(F.dequantize_4bit(packed, state).to(module.weight.dtype))
            names.append(name)
        return {**self.summary(scheme), "n_layers": len(names), "deployed": "dense dequantized weights"}

    def codes(self, weight: torch.Tensor, scheme) -> dict[str, torch.Tensor]:
        import bitsandbytes.functional as F

        packed, state = quantize_4bit(
            weight.float(), QUANT_TYPES[scheme.quantizer], scheme.setting("blocksize"), scheme.setting("double_quant")
        )
        if state.nested:  # double quantization stores the block absmax quantized (state2) around an offset
            absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
        else:
            absmax = state.absmax.float()
        return {"codes": unpack_4bit(packed, weight.numel()).reshape(weight.shape), "absmax": absmax}


class BnbFp4(_Bnb4bit):
    pass


class BnbNf4(_Bnb4bit):
    pass
