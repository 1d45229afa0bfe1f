"""Self-describing plugins: an unlearning method, a quantizer or a metric is one module that
declares a torch-free *spec* (name, settings dataclass, traits) and registers it once; its
implementation sits in the same module and is imported only when a job runs it (``spec.load()``).

Planner, resources, checks, reports and the docs' configuration reference read the registries;
nothing parses a plugin's name. ``import qunlearn.registries`` never imports torch (a dry run stays
fast; tests/test_plugins.py checks it).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError, from_dict, to_dict


@dataclass(frozen=True)
class PluginSpec:
    """What every plugin declares. ``settings`` is a dataclass whose field defaults are the
    plugin's defaults and whose optional ``validate(where)`` checks values; ``impl`` names the
    implementation as ``"module:attribute"`` (imported lazily)."""

    name: str
    settings: type
    impl: str
    summary: str  # one line for the configuration reference
    source: str = ""  # where the method/quantizer/metric comes from (docs)

    def resolve(self, raw: dict | None, where: str):
        """The settings dataclass from a config mapping (unknown keys and bad values name ``where``)."""
        return from_dict(self.settings, raw, where)

    def load(self):
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)

    def defaults(self) -> dict:
        return to_dict(self.settings())

    def setting_docs(self) -> list[tuple[str, str, Any]]:
        """(key, type, default) of every setting, for the configuration reference."""
        out = []
        for f in dataclasses.fields(self.settings):
            default = (
                f.default
                if f.default is not dataclasses.MISSING
                else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            )
            out.append((f.name, str(f.type), default))
        return out


@dataclass(frozen=True)
class MethodSpec(PluginSpec):
    """An unlearning method. Traits:

    - ``reference_outputs``: what the frozen copy of the target must return (``"logits"``,
      ``"hidden_states"``); empty = no frozen reference (it is neither built nor sized).
    - ``needs_retain``: reads the retain split (D_r) during unlearning.
    - ``trains``: which parameters move (documentation; the implementation's
      ``trainable_parameters`` hook enforces it).
    - ``objective``: the method whose alpha grid it inherits when it has no ``alphas`` of its own
      (SURE variants: their objective); None = itself.
    - ``saliency_masked``: restricts updates to forget-salient parameters (the SURE table).
    - ``quantization_aware``: optimizes its forget term through a deployment quantizer (the
      ``<objective>_qa`` variants); a config with one gets the report's ``qa_comparison`` table
      (the variant beside its objective and the objective's SURE variant, at every lr run).
    - ``family``: a group name for figures (e.g. ``ga``, ``npo``).
    - ``gradient_free``: edits the weights directly (the implementation's ``edit`` hook) instead of
      running the optimizer loop; the arm's lr, epochs and loss variant are recorded but unused, so
      the lr, epochs and loss-variant sweeps reject it.
    - ``preparation``: the name of a preparatory stage (e.g. ``finetune_forget``): one cached job per
      dataset and seed (rule ``prepare_method``, output ``models/prepared/<method>/seed~<n>``) trains
      a model with the implementation's ``preparation`` hook, and every arm of the method (each
      alpha) takes it as an input (``edit``'s ``prepared``); empty = none.
    - ``deployments``: deployment modes (qunlearn.deploy.MODES) the method's model directory supports
      beside its merged weights, e.g. ``adapter_on_quantized`` (the quantized base with the
      full-precision adapter on top; the ``artifacts`` hook writes the adapter and the base). Each
      headline arm of the method gets a derived model ``derived/deploy/mode~<mode>/of/<arm>``,
      evaluated at the arm's schemes; empty = none.
    - ``reads_splits``: raw splits beyond D_f and D_r it reads during unlearning (e.g. LLM
      Surgery's ``update``): stages.unlearn_model reads ``raw/<split>``, the loop cycles its batches
      alongside D_r's and passes them to ``losses`` as ``extra={split: batch}``; a dataset without
      the split rejects the method at config time (data/entities.py ``dataset_has_raw_split``).
    """

    reference_outputs: tuple[str, ...] = ()
    needs_retain: bool = False
    trains: str = "all parameters"
    objective: str | None = None
    saliency_masked: bool = False
    quantization_aware: bool = False
    family: str = ""
    gradient_free: bool = False
    preparation: str = ""
    deployments: tuple[str, ...] = ()
    reads_splits: tuple[str, ...] = ()

    @property
    def needs_reference(self) -> bool:
        return bool(self.reference_outputs)


@dataclass(frozen=True)
class QuantizerSpec(PluginSpec):
    """A weight quantizer. Traits: ``calibrated`` (needs calibration data: a cached quantize job
    makes its checkpoint), ``nominal_bits`` (bits per weight a reader names it by; None = the
    settings' ``bits``)."""

    calibrated: bool = False
    nominal_bits: int | None = None

    def bits(self, settings) -> int:
        return int(self.nominal_bits if self.nominal_bits is not None else settings.bits)


@dataclass(frozen=True)
class MetricSpec(PluginSpec):
    """An evaluation metric. ``key`` is its entry in an eval JSON's ``metrics``; ``column`` its
    name in metrics.csv and the tables. Traits: ``retention`` (part of forget-knowledge retention),
    ``utility`` (the utility constraint of the alpha selection), ``relative_to`` (a derived column
    computed against another model, e.g. PrivLeak against the retrain model), ``enabled_by`` (an
    optional metric group a dataset switches on, e.g. the paper's utility scores)."""

    key: str = ""
    column: str = ""
    scale: float = 100.0  # reported x100 (MUSE convention)
    retention: bool = False
    utility: bool = False
    relative_to: str | None = None
    order: int = 0  # position in Table 1
    # the dataset config section that switches it on (``datasets.<n>.<enabled_by>.enabled``; its
    # settings reach the metric as ``settings``); None = always computed
    enabled_by: str | None = None


@dataclass(frozen=True)
class AttackSpec(PluginSpec):
    """A recovery attack: a transform model -> model applied to any model id. One job per point of
    its grid; the output is the derived model id ``derived/<name>/<key>~<value>.../of/<parent>``,
    which evaluate, quantize and analysis treat like any other model.

    The settings class declares ``points() -> list[dict[str, str]]``: the grid, each point the
    id's key/value segments in order (the rest of the settings go into the job's params).
    ``strength`` names the point key a recovery curve puts on its x-axis. Traits:

    - ``finetunes``: trains on data; also run on the retrain model with the same data and budget
      (the re-teaching control: tables report recovery above it).
    - ``needs_target``: reads the released target's weights (interpolation toward it).
    - ``needs_entities``: needs a dataset that declares which entity each record and QA item belongs
      to (held-out relearning); others reject it at config time.
    - ``controls``: the bases it is applied to as controls (the target's interpolation toward
      itself would be the identity, so interpolate runs on the retrain model only).
    """

    strength: str = ""
    finetunes: bool = False
    needs_target: bool = False
    needs_entities: bool = False
    controls: tuple[str, ...] = ("retrain", "target")


class Registry:
    """name -> spec, in registration order. Registration happens once, at import of the plugin's
    module; a second registration of a name is an error."""

    def __init__(self, kind: str, spec_type: type):
        self.kind = kind
        self.spec_type = spec_type
        self._specs: dict[str, PluginSpec] = {}

    def register(self, spec: PluginSpec) -> PluginSpec:
        if not isinstance(spec, self.spec_type):
            raise TypeError(f"{self.kind} {spec.name!r}: expected a {self.spec_type.__name__}")
        if spec.name in self._specs:
            raise ValueError(f"{self.kind} {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str, where: str = "") -> PluginSpec:
        """The spec of ``name``; an unknown name is a ConfigError naming ``where`` and the known names."""
        try:
            return self._specs[name]
        except KeyError:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}; known: {', '.join(self._specs)}") from None

    def __getitem__(self, name: str) -> PluginSpec:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def specs(self) -> list[PluginSpec]:
        return list(self._specs.values())


METHODS = Registry("unlearning method", MethodSpec)
QUANTIZERS = Registry("quantizer", QuantizerSpec)
METRICS = Registry("metric", MetricSpec)
ATTACKS = Registry("attack", AttackSpec)


@dataclass
class MethodSettings:
    """Settings every method has (``unlearn.methods.<name>``). The planning keys (``alphas``,
    ``lr``, ``schemes``) shape the grid; every other field of a method's settings class is its own
    setting and goes into its jobs' params (:meth:`own`)."""

    # With two or more alphas the grid is run and unlearn.alpha_selection picks one; with one alpha
    # that one is used; null = inherit the selection of the spec's ``objective``.
    alphas: list[float] | None = None
    lr: float | None = None  # null = unlearn.lr
    # the schemes its headline arms are evaluated at, within the dataset's (null = all of them)
    schemes: list[str] | None = None

    PLANNING = ("alphas", "lr", "schemes")

    def own(self) -> dict:
        """The method's own settings (what its jobs depend on beyond the arm's coordinates)."""
        return {k: v for k, v in to_dict(self).items() if k not in self.PLANNING}

    def validate(self, where: str) -> None:
        if self.schemes is not None and (not self.schemes or len(set(self.schemes)) != len(self.schemes)):
            raise ConfigError(f"{where}.schemes: a non-empty list without repeats, got {self.schemes}")
        if self.alphas is not None and (not self.alphas or any(a < 0 for a in self.alphas)):
            raise ConfigError(f"{where}.alphas: a non-empty list of numbers >= 0, got {self.alphas}")
        if self.alphas is not None and len(set(self.alphas)) != len(self.alphas):
            raise ConfigError(f"{where}.alphas: repeated value in {self.alphas}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")


def no_settings() -> type:
    """A settings class with no keys (quantizer ``none``, metrics without options)."""
    return dataclasses.make_dataclass("NoSettings", [])


__all__ = [
    "PluginSpec",
    "MethodSpec",
    "QuantizerSpec",
    "MetricSpec",
    "AttackSpec",
    "Registry",
    "METHODS",
    "QUANTIZERS",
    "METRICS",
    "ATTACKS",
    "MethodSettings",
    "field",
]


@dataclass(frozen=True)
class Scheme:
    """A configured quantization scheme (``quantize.schemes.<name>``): a registered quantizer and
    its resolved settings. ``resolved()`` = ``{"quantizer": ..., **settings}`` is what a job's params
    and meta.json hold."""

    name: str
    spec: QuantizerSpec
    settings: Any

    @classmethod
    def from_config(cls, name: str, raw: dict | None) -> Scheme:
        where = f"quantize.schemes.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping with a 'quantizer' key, got {raw!r}")
        rest = dict(raw)
        quantizer = rest.pop("quantizer", None)
        if quantizer is None:
            raise ConfigError(f"{where}.quantizer: missing; known: {', '.join(QUANTIZERS)}")
        spec = QUANTIZERS.get(quantizer, f"{where}.quantizer")
        return cls(name, spec, spec.resolve(rest, where))

    @classmethod
    def from_resolved(cls, name: str, resolved: dict) -> Scheme:
        """From a job's params (the output of :meth:`resolved`)."""
        return cls.from_config(name, resolved)

    def resolved(self) -> dict:
        return {"quantizer": self.spec.name, **to_dict(self.settings)}

    def setting(self, key: str):
        return getattr(self.settings, key)

    @property
    def quantizer(self) -> str:
        return self.spec.name

    @property
    def calibrated(self) -> bool:
        return self.spec.calibrated

    @property
    def nominal_bits(self) -> int:
        return self.spec.bits(self.settings)
