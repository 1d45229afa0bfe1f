"""The unlearning-method registry: config key == registry key == the {method} wildcard."""

from __future__ import annotations

from typing import Callable

METHODS: dict[str, type] = {}


def register_method(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in METHODS:
            raise ValueError(f"unlearning method {name!r} registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


def get_method(name: str, **kwargs):
    try:
        return METHODS[name](**kwargs)
    except KeyError:
        raise KeyError(
            f"unknown unlearning method {name!r}; registered: {', '.join(sorted(METHODS))}"
        ) from None
