"""A name -> class registry, shared by unlearning methods and quantizers.

The registry key is the config key and the Snakemake wildcard value; the schema's enum lists the
same names (tests/test_config.py checks it)."""

from __future__ import annotations

from typing import Callable


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[type], type]:
        def deco(cls: type) -> type:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name
            self[name] = cls
            return cls

        return deco

    def create(self, name: str, **kwargs):
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self))}")
        return self[name](**kwargs)
