"""GPTQ and AWQ through llmcompressor (the vLLM project's maintained successor of AutoGPTQ/AutoAWQ).

Why llmcompressor (docs/guide/schemes.md): auto-gptq does not import with transformers 5 and refuses
to quantize without CUDA; autoawq is deprecated upstream and cannot load its own output on a CPU;
gptqmodel declares torch>=2.14.1 (a plain install pulls a CUDA torch; it works only installed with
--no-deps) and its CPU kernels accept only fp16/bf16. llmcompressor 0.14 installs from PyPI with the
CPU torch, runs both algorithms on the CPU and is bit-reproducible.

Both quantizers calibrate once per model (one ``oneshot`` call, sequential pipeline, calibration
order fixed: ``shuffle_calibration_samples=False``), then write back the weights a W{bits}A16 kernel
computes with: ``dequantize(quantize(W))`` with the learned scales and zero points (exactly what the
frozen llmcompressor module computes in its forward). AWQ also rescales the RMSNorm weights that
precede the smoothed Linear layers; those are kept. The integer codes, scales and zero points are
returned too (the quantize rule saves them beside the dense checkpoint), so the weight-change
analysis compares exact codes.

The AWQ CPU workaround: during its scale search llmcompressor pins cached activations
(``IntermediatesCache.pin_memory``) for faster host-to-device copies; ``Tensor.pin_memory()`` raises
"Cannot access accelerator device when none is available" on a machine without an accelerator.
:func:`_no_pin_memory_without_accelerator` turns exactly that method into a no-op, only while
calibrating and only when ``torch.accelerator.is_available()`` is false; pinning changes no value.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

from ..config import ConfigError
from ..data import muse_format
from ..plugins import QUANTIZERS, QuantizerSpec
from . import check_bits, check_group_size, no_grad, target_linears

CALIBRATION_SPLITS = ("retain1", "retain2", "holdout")  # raw/<split>: never the forget set
GPTQ_ACTORDERS = ("static", "group", "weight")


@dataclass
class CalibrationSettings:
    """The calibration data of gptq and awq. Their settings classes list these fields last
    (``class GPTQSettings(CalibrationSettings, GPTQWeightSettings)``): a dataclass puts the fields
    of later bases first, and the order is that of a scheme's resolved dict and meta.json."""

    calibration_split: str = "retain2"  # raw/<split> of the dataset: retain1 | retain2 | holdout
    calibration_samples: int = 32  # records taken from that split (in file order after a seeded shuffle)
    calibration_seed: int = 0  # seed of that shuffle (and of torch during calibration)
    calibration_max_length: int = 256  # tokens per calibration record (truncation)

    def validate(self, where: str) -> None:
        if self.calibration_split not in CALIBRATION_SPLITS:
            raise ConfigError(
                f"{where}.calibration_split: {self.calibration_split!r} not allowed; "
                f"use one of {', '.join(CALIBRATION_SPLITS)} (never the forget set)"
            )
        if self.calibration_samples < 1:
            raise ConfigError(f"{where}.calibration_samples: must be >= 1")


@dataclass
class GPTQWeightSettings:
    bits: int = 4
    group_size: int | None = 128  # null / 0 = per output channel
    symmetric: bool = True
    dampening: float = 0.01  # fraction of the mean Hessian diagonal added
    actorder: str | None = None  # null (no act-order, original GPTQ) | static | group | weight
    block_size: int = 128  # columns per lazy-batch update

    def validate(self, where: str) -> None:
        check_bits(where, self.bits, self.group_size, "gptq")
        if not 0 <= self.dampening < 1:
            raise ConfigError(f"{where}.dampening: must be in [0, 1), got {self.dampening}")
        if self.actorder is not None and self.actorder not in GPTQ_ACTORDERS:
            raise ConfigError(
                f"{where}.actorder: {self.actorder!r} unknown; use null or one of {', '.join(GPTQ_ACTORDERS)}"
            )


@dataclass
class AWQWeightSettings:
    bits: int = 4
    group_size: int | None = 128  # null / 0 = per output channel
    symmetric: bool = False
    duo_scaling: bool = True  # scales from activations and weights
    n_grid: int = 20  # grid points of the scale search

    def validate(self, where: str) -> None:
        check_bits(where, self.bits, self.group_size, "awq")


@dataclass
class GPTQSettings(CalibrationSettings, GPTQWeightSettings):
    def validate(self, where: str) -> None:
        GPTQWeightSettings.validate(self, where)
        CalibrationSettings.validate(self, where)


@dataclass
class AWQSettings(CalibrationSettings, AWQWeightSettings):
    def validate(self, where: str) -> None:
        AWQWeightSettings.validate(self, where)
        CalibrationSettings.validate(self, where)


SOURCE = "llmcompressor (vLLM project)"
QUANTIZERS.register(
    QuantizerSpec(
        name="gptq",
        settings=GPTQSettings,
        impl="qunlearn.quantize.llmc:GPTQQuantizer",
        summary="GPTQ: integer weights rounded with second-order error correction, calibrated on retain-side data",
        source=f"Frantar et al. 2023, via {SOURCE}",
        calibrated=True,
    )
)
QUANTIZERS.register(
    QuantizerSpec(
        name="awq",
        settings=AWQSettings,
        impl="qunlearn.quantize.llmc:AWQQuantizer",
        summary="AWQ: activation-aware weight scaling, then integer weights, calibrated on retain-side data",
        source=f"Lin et al. 2024, via {SOURCE}",
        calibrated=True,
    )
)


def calibration_texts(texts: list[str], n: int, seed: int) -> list[str]:
    """``n`` texts chosen by a seeded shuffle of the split (all of them if the split is smaller)."""
    return [texts[i] for i in muse_format.seeded_subset(len(texts), n, seed)]


@contextlib.contextmanager
def _no_pin_memory_without_accelerator():
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield False
        return
    original = IntermediatesCache.pin_memory
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original


def _weight_args(scheme):
    from compressed_tensors.quantization import QuantizationArgs

    g = scheme.setting("group_size")
    kw = dict(num_bits=int(scheme.setting("bits")), type="int", symmetric=bool(scheme.setting("symmetric")))
    if g:
        kw.update(strategy="group", group_size=int(g))
    else:
        kw.update(strategy="channel")
    if scheme.quantizer == "gptq" and scheme.setting("actorder") is not None:
        kw.update(actorder=scheme.setting("actorder"))
    return QuantizationArgs(**kw)


class _LlmcBase:
    def apply(self, model, scheme) -> dict:
        raise ValueError(
            f"quantizer {scheme.quantizer!r} needs calibration data: it runs in the quantize "
            "rule (stages.quantize_checkpoint), not on the fly"
        )

    def _recipe(self, scheme, quant_scheme):
        raise NotImplementedError

    @no_grad
    def calibrate(self, model, tokenizer, texts: list[str], scheme) -> tuple[dict, dict]:
        """Quantize ``model`` in place (dense dequantized Linear weights); returns (codes, info).

        ``texts`` are the calibration records (already chosen); each is tokenized and truncated to
        ``calibration_max_length`` tokens, one sample per record.
        """
        import torch
        from compressed_tensors.quantization import QuantizationScheme
        from compressed_tensors.quantization.lifecycle.forward import dequantize, fake_quantize, quantize
        from datasets import Dataset
        from llmcompressor import oneshot

        if not texts:
            raise ValueError(f"{scheme.quantizer}: no calibration texts")
        check_group_size(
            target_linears(model, include_lm_head=False),
            scheme.setting("group_size"),
            f"quantize.schemes.{scheme.name}.group_size",
        )
        s = scheme.resolved()
        enc = [tokenizer(t, truncation=True, max_length=s["calibration_max_length"]) for t in texts]
        ds = Dataset.from_dict(
            {"input_ids": [e["input_ids"] for e in enc], "attention_mask": [e["attention_mask"] for e in enc]}
        )
        wargs = _weight_args(scheme)
        quant_scheme = QuantizationScheme(targets=["Linear"], weights=wargs)
        names = list(target_linears(model, include_lm_head=False))
        _log_to_current_stderr()
        torch.manual_seed(s["calibration_seed"])
        with _no_pin_memory_without_accelerator() as patched:
            with torch.enable_grad():  # llmcompressor manages grad itself
                oneshot(
                    model=model,
                    dataset=ds,
                    recipe=self._recipe(scheme, quant_scheme),
                    num_calibration_samples=len(texts),
                    shuffle_calibration_samples=False,
                    max_seq_length=s["calibration_max_length"],
                    pipeline="sequential",
                    tie_word_embeddings=False,
                )
        codes: dict[str, dict[str, torch.Tensor]] = {}
        modules = dict(model.named_modules())
        for name in names:
            m = modules[name]
            if getattr(m, "weight_scale", None) is None:
                raise RuntimeError(f"{scheme.quantizer}: {name} was not quantized by llmcompressor")
            scale, zp = m.weight_scale.detach(), m.weight_zero_point.detach()
            w = m.weight.detach()
            deployed = fake_quantize(w, scale, zp, wargs)
            q = quantize(w, scale, zp, wargs, dtype=torch.int8)
            if not torch.equal(dequantize(q, scale, zp, wargs, dtype=w.dtype), deployed):
                raise RuntimeError(f"{scheme.quantizer}: {name}: codes do not reproduce the deployed weight")
            codes[name] = {
                "codes": q.to(torch.int8).contiguous(),
                "scale": scale.float().contiguous(),
                "zero_point": zp.to(torch.int8).contiguous(),
            }
            m.weight.data = deployed.contiguous()
        _strip_quantization(model, names)
        import compressed_tensors
        import llmcompressor

        text_hash = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
        info = {
            "quantizer": scheme.quantizer,
            **s,
            "n_layers": len(names),
            "weight_args": wargs.model_dump(mode="json"),
            "calibration": {
                "n_records": len(texts),
                "n_tokens": sum(len(e["input_ids"]) for e in enc),
                "sha256": text_hash,
                "shuffle_calibration_samples": False,
                "pipeline": "sequential",
            },
            "awq_cpu_pin_memory_noop": bool(patched) if scheme.quantizer == "awq" else False,
            "llmcompressor": llmcompressor.__version__,
            "compressed_tensors": compressed_tensors.__version__,
            "deployed": "dense dequantized weights (W{}A16 fake-quant, fp32)".format(s["bits"]),
        }
        return codes, info


def _log_to_current_stderr() -> None:
    """llmcompressor logs through loguru, bound to the stderr of import time; send it to the
    current stderr (the job's log file under jobs.job_logging), INFO and above."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="INFO")


def _strip_quantization(model, names) -> None:
    """Remove llmcompressor's scale/zero-point parameters and forward wrappers: a plain dense model."""
    modules = dict(model.named_modules())
    for name in names:
        m = modules[name]
        for attr in ("weight_scale", "weight_zero_point", "weight_g_idx", "weight_global_scale"):
            if attr in m._parameters:
                del m._parameters[attr]
        for attr in ("quantization_scheme", "quantization_status", "quantization_enabled"):
            if attr in m.__dict__:
                delattr(m, attr)
        if "forward" in m.__dict__:  # compressed-tensors wraps forward per instance
            del m.__dict__["forward"]


class GPTQQuantizer(_LlmcBase):
    def _recipe(self, scheme, quant_scheme):
        from llmcompressor.modifiers.gptq import GPTQModifier

        return [
            GPTQModifier(
                config_groups={"group_0": quant_scheme},
                ignore=["lm_head"],
                dampening_frac=float(scheme.setting("dampening")),
                actorder=scheme.setting("actorder"),
                block_size=int(scheme.setting("block_size")),
            )
        ]


class AWQQuantizer(_LlmcBase):
    def _recipe(self, scheme, quant_scheme):
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [
            AWQModifier(duo_scaling=bool(scheme.setting("duo_scaling")), n_grid=int(scheme.setting("n_grid"))),
            QuantizationModifier(config_groups={"group_0": quant_scheme}, ignore=["lm_head"]),
        ]
