"""The unlearning-method registry: config key == registry key == the {method} wildcard."""

from __future__ import annotations

from ..registry import Registry

METHODS = Registry("unlearning method")
register_method = METHODS.register


def get_method(name: str, **kwargs):
    return METHODS.create(name, **kwargs)
