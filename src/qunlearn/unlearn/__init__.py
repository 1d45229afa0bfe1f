"""Unlearning methods. Adding a method: one module with a ``@register_method("name")`` class, one
import line below, one enum entry in workflow/schemas/config.schema.yaml."""

from .registry import METHODS, get_method, register_method  # noqa: F401
from . import methods, sure  # noqa: F401,E402  (registration side effects)
from .loop import unlearn  # noqa: F401,E402
