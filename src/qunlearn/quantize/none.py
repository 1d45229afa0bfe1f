"""The unquantized baseline (full precision, as loaded)."""

from __future__ import annotations

from ..plugins import QUANTIZERS, QuantizerSpec, no_settings

SPEC = QUANTIZERS.register(
    QuantizerSpec(
        name="none",
        settings=no_settings(),
        impl="qunlearn.quantize.none:NoQuantizer",
        summary="no quantization: the model as loaded (fp32)",
        nominal_bits=32,
    )
)


class NoQuantizer:
    def apply(self, model, scheme) -> dict:
        return {"quantizer": "none", "n_layers": 0}

    def codes(self, weight, scheme) -> dict:
        """Unquantized: the stored value is the fp32 weight itself."""
        return {"codes": weight}
