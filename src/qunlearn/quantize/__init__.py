"""Quantizer registry. Adding a quantizer: one module with a ``@register("name")`` class, one import
line below, one enum entry in workflow/schemas/config.schema.yaml."""

from .registry import QUANTIZERS, get_quantizer, quantize_model, register  # noqa: F401
from . import none, rtn  # noqa: F401,E402  (registration side effects)
