"""Quantizer registry. Adding a quantizer: one module with a ``@register("name")`` class, one import
line below, one enum entry in workflow/schemas/config.schema.yaml and its settings (with defaults)
in ``config.QUANTIZER_SETTINGS``."""

from .registry import QUANTIZERS, get_quantizer, load_quantized, quantize_model, register  # noqa: F401
from . import none, rtn, cast, bnb, llmc  # noqa: F401,E402  (registration side effects)
