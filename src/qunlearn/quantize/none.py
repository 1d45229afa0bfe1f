"""The unquantized baseline (full precision, as loaded)."""

from __future__ import annotations

from .registry import register


@register("none")
class NoQuantizer:
    def apply(self, model, scheme) -> dict:
        return {"quantizer": "none", "n_layers": 0}

    def codes(self, weight, scheme) -> dict:
        """Unquantized: the stored value is the fp32 weight itself."""
        return {"codes": weight}
