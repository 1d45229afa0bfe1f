"""The one path grammar: every model id and every output path is formatted and parsed here.

Model ids (``{model_id}`` in paths; docs: "Paths and model ids"):

    target | retrain                                         a base, as released
    unlearn/<method>/alpha~<a>/lr~<lr>/epochs~<e>/loss~<v>   an unlearned arm (a = a number | selected)
    unlearn/<method>/seed~<n>/alpha~<a>/...                  the same arm unlearned with another seed
    external/<name>                                          a model made elsewhere (a user's checkpoint)
    derived/<transform>/<key>~<value>/.../of/<model id>      a transform of another model id
                                                             (an attack, a merge, a deployment mode)

Not model ids: a method's preparatory model (spec trait ``preparation``, e.g. the task vector's
fine-tune on D_f) lives at ``models/prepared/<method>/seed~<n>`` (:data:`PREPARED`; the seed is
always written, the base seed's too). It is an input of the method's unlearn jobs, never evaluated.

Derived ids nest: ``derived/noise/c~0.5/of/derived/relearn/steps~100/of/target``. They live under
``models/derived/`` rather than inside their parent's directory, so that rewriting a parent never
touches a derived model. evaluate, quantize and analysis take any model id.

The seed coordinate: an arm run with the config's ``seed`` (the base seed) has no seed segment, so a
one-seed config has the ids it always had; a replicate with another seed of ``seeds`` carries
``seed~<n>`` right after the method. (Not at the end: the replicate's directory would then sit inside
the base-seed arm's directory, and rewriting one would touch the other.)

Output paths are patterns with ``{wildcards}`` (the Snakemake rules use them as they are) and
functions that fill them; ``parse_*`` are their inverses. Round trips are tested
(tests/test_paths.py); the ``model_id`` wildcard constraint is :data:`MODEL_ID_REGEX`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

RESULTS = "results"
BASES = ("target", "retrain")
SELECTED = "selected"  # the alpha of an arm whose alpha comes from the alpha selection
ARM_FIELDS = ("alpha", "lr", "epochs", "loss")
SEED = "seed"  # the key of an arm's seed segment

# --- output path patterns (wildcards in braces) ----------------------------------------------------
DATA = f"{RESULTS}/{{dataset}}/data"
TRAINED = f"{RESULTS}/{{dataset}}/models/trained/{{base}}"
PRETRAINED = f"{RESULTS}/{{dataset}}/models/pretrained/{{base}}"
MODEL = f"{RESULTS}/{{dataset}}/models/{{model_id}}"
# a method's preparatory model (outside the model-id grammar: "prepared" starts no model id)
PREPARED = f"{RESULTS}/{{dataset}}/models/prepared/{{method}}/seed~{{seed}}"
SELECTION = f"{RESULTS}/{{dataset}}/selection/{{method}}.json"
EVAL = f"{RESULTS}/{{dataset}}/eval/{{model_id}}/{{scheme}}.json"
QUANT = f"{RESULTS}/{{dataset}}/quant/{{model_id}}/{{scheme}}"
ANALYSIS = f"{RESULTS}/{{dataset}}/analysis/{{model_id}}"
ANALYSIS_FILE = f"{ANALYSIS}/{{scheme}}.json"
TABLE = f"{RESULTS}/tables/{{name}}"
FIGURE = f"{RESULTS}/figures/{{name}}"
PAPER_TABLE = "paper/tables/{name}"
PAPER_FIGURE = "paper/figures/{name}"
# The path pattern of an unlearned arm's model id, with the arm's wildcards.
ARM = "unlearn/{method}/alpha~{alpha}/lr~{lr}/epochs~{epochs}/loss~{loss}"
# ... of a replicate with a seed other than the base seed (rule unlearn_seeded)
ARM_SEEDED = "unlearn/{method}/seed~{seed}/alpha~{alpha}/lr~{lr}/epochs~{epochs}/loss~{loss}"

# ... of a model derived by an attack (rule attack): {point} is its key~value segments
DERIVED = "derived/{attack}/{point}/of/{parent}"
POINT_REGEX = r"[^/~]+~[^/~]+(?:/[^/~]+~[^/~]+)*"

# --- model ids ----------------------------------------------------------------------------------------
_SEG = r"[^/~]+"
_ARM_RE = rf"unlearn/{_SEG}(?:/seed~[0-9]+)?/alpha~{_SEG}/lr~{_SEG}/epochs~{_SEG}/loss~{_SEG}"
_EXTERNAL_RE = rf"external/{_SEG}"
_ROOT_RE = rf"(?:target|retrain|{_ARM_RE}|{_EXTERNAL_RE})"
_DERIVED_PREFIX_RE = rf"derived/{_SEG}(?:/{_SEG}~{_SEG})*/of/"
MODEL_ID_REGEX = rf"(?:{_DERIVED_PREFIX_RE})*{_ROOT_RE}"
_MODEL_ID = re.compile(rf"^{MODEL_ID_REGEX}$")


def fmt_num(x: float) -> str:
    """Canonical text of a number in ids and tables: 1 -> '1', 3e-05 -> '3e-05', 0.5 -> '0.5'.

    Exact: the short ``:g`` form when it reads back as the same float, else the shortest text that
    does (``repr``), e.g. 1.0000001 -> '1.0000001' (``:g`` would give '1'). So ``float(fmt_num(x))
    == x`` and two distinct numbers never share a path."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{x!r}: not a finite number (ids and paths hold finite numbers only)")
    short = f"{x:g}"
    if float(short) == x:
        return short
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


@dataclass(frozen=True, order=True)
class Arm:
    """One unlearned model of a dataset: a method with an alpha (a number or 'selected'), an lr,
    epochs and a loss variant (all as their path text), and the seed of a replicate ('' = the base
    seed: no seed segment in the id)."""

    dataset: str
    method: str
    alpha: str
    lr: str
    epochs: str
    loss: str
    seed: str = ""

    @property
    def model_id(self) -> str:
        fields = dict(method=self.method, alpha=self.alpha, lr=self.lr, epochs=self.epochs, loss=self.loss)
        if self.seed:
            return ARM_SEEDED.format(seed=self.seed, **fields)
        return ARM.format(**fields)

    @property
    def selected(self) -> bool:
        return self.alpha == SELECTED

    def replace(self, **fields) -> Arm:
        return Arm(**{**self.__dict__, **fields})


def seedless_id(model_id: str) -> str:
    """The id of the base-seed run a model id replicates (itself when it has no seed segment, also
    inside a derived id): the key under which the tables combine seeds."""
    return re.sub(r"(^|/)(unlearn/[^/~]+)/seed~[0-9]+/", r"\1\2/", model_id)


def seed_of(model_id: str) -> str:
    """The seed segment's value of a model id ('' when it has none: the base seed)."""
    m = re.search(r"(?:^|/)unlearn/[^/~]+/seed~([0-9]+)/", model_id)
    return m.group(1) if m else ""


def external_id(name: str) -> str:
    _check_segment(name, "external model name")
    return f"external/{name}"


def derived_id(parent: str, transform: str, settings: dict[str, str] | None = None) -> str:
    """The id of ``transform`` (with its id-relevant settings, as text) applied to ``parent``."""
    parse_model_id(parent)  # a valid id
    _check_segment(transform, "transform name")
    parts = ["derived", transform]
    for key, value in (settings or {}).items():
        _check_segment(key, "setting name")
        _check_segment(str(value), f"value of {key}")
        parts.append(f"{key}~{value}")
    return "/".join([*parts, "of", parent])


def _check_segment(text: str, what: str) -> None:
    if not text or "/" in text or "~" in text or text == "of":
        raise ValueError(f"{what} {text!r}: must be non-empty, without '/' or '~', and not 'of'")


@dataclass(frozen=True)
class ModelIdParts:
    """A parsed model id. ``kind``: base | unlearn | external | derived."""

    kind: str
    model_id: str
    base: str = ""  # kind base: target | retrain
    method: str = ""  # kind unlearn
    alpha: str = ""
    lr: str = ""
    epochs: str = ""
    loss: str = ""
    seed: str = ""  # kind unlearn: a replicate's seed ('' = the base seed)
    name: str = ""  # kind external
    transform: str = ""  # kind derived
    settings: tuple[tuple[str, str], ...] = ()
    parent: str = ""

    @property
    def root(self) -> ModelIdParts:
        """The base, arm or external model at the bottom of a chain of derivations."""
        return parse_model_id(self.parent).root if self.kind == "derived" else self

    def arm(self, dataset: str) -> Arm:
        if self.kind != "unlearn":
            raise ValueError(f"{self.model_id!r} is not an unlearned arm")
        return Arm(dataset, self.method, self.alpha, self.lr, self.epochs, self.loss, self.seed)


def parse_model_id(model_id: str) -> ModelIdParts:
    """Inverse of the id formatters; a string outside the grammar is a ValueError naming it."""
    if not _MODEL_ID.match(model_id):
        raise ValueError(
            f"{model_id!r}: not a model id (target | retrain | "
            "unlearn/<method>[/seed~N]/alpha~A/lr~L/epochs~E/loss~V | external/<name> | "
            "derived/<transform>/<key>~<value>.../of/<model id>)"
        )
    parts = model_id.split("/")
    if model_id in BASES:
        return ModelIdParts("base", model_id, base=model_id)
    if parts[0] == "unlearn":
        values = dict(p.split("~", 1) for p in parts[2:])
        fields = {k: values[k] for k in ARM_FIELDS}
        return ModelIdParts("unlearn", model_id, method=parts[1], seed=values.get(SEED, ""), **fields)
    if parts[0] == "external":
        return ModelIdParts("external", model_id, name=parts[1])
    i = parts.index("of")
    settings = tuple(tuple(p.split("~", 1)) for p in parts[2:i])
    return ModelIdParts("derived", model_id, transform=parts[1], settings=settings, parent="/".join(parts[i + 1 :]))


# --- output paths ----------------------------------------------------------------------------------
def data_dir(dataset: str) -> str:
    return DATA.format(dataset=dataset)


def trained_dir(dataset: str, base: str, pretrained: bool = False) -> str:
    return (PRETRAINED if pretrained else TRAINED).format(dataset=dataset, base=base)


def model_dir(dataset: str, model_id: str) -> str:
    return MODEL.format(dataset=dataset, model_id=model_id)


def prepared_dir(dataset: str, method: str, seed: int | str) -> str:
    return PREPARED.format(dataset=dataset, method=method, seed=seed)


def parse_prepared_dir(path: str) -> tuple[str, str, str]:
    """(dataset, method, seed) of a preparatory model's directory."""
    w = parse(PREPARED, path)
    return w["dataset"], w["method"], w["seed"]


def selection_file(dataset: str, method: str) -> str:
    return SELECTION.format(dataset=dataset, method=method)


def eval_file(dataset: str, model_id: str, scheme: str) -> str:
    return EVAL.format(dataset=dataset, model_id=model_id, scheme=scheme)


def quant_dir(dataset: str, model_id: str, scheme: str) -> str:
    return QUANT.format(dataset=dataset, model_id=model_id, scheme=scheme)


def analysis_dir(dataset: str, model_id: str) -> str:
    return ANALYSIS.format(dataset=dataset, model_id=model_id)


def analysis_file(dataset: str, model_id: str, scheme: str) -> str:
    return ANALYSIS_FILE.format(dataset=dataset, model_id=model_id, scheme=scheme)


def table(name: str) -> str:
    return TABLE.format(name=name)


def figure(name: str) -> str:
    return FIGURE.format(name=name)


def log_file(rule: str, *wildcards: str) -> str:
    """logs/<rule>/<wildcards...>.log (the same wildcards as the job's outputs)."""
    return "/".join(["logs", rule, *wildcards]) + ".log"


def benchmark_file(rule: str, *wildcards: str) -> str:
    return "/".join(["benchmarks", rule, *wildcards]) + ".tsv"


def _output_regex(pattern: str) -> re.Pattern:
    """A pattern's parser: ``{model_id}`` by the id grammar, other wildcards as one path segment."""
    rx = re.escape(pattern)
    for name in re.findall(r"\\\{(\w+)\\\}", rx):
        body = MODEL_ID_REGEX if name == "model_id" else r"[^/]+"
        rx = rx.replace(rf"\{{{name}\}}", f"(?P<{name}>{body})", 1)
    return re.compile(rf"(?:^|/){rx}$")


_PARSERS = {
    pattern: _output_regex(pattern) for pattern in (EVAL, ANALYSIS_FILE, ANALYSIS, MODEL, QUANT, SELECTION, PREPARED)
}


def parse(pattern: str, path: str) -> dict[str, str]:
    """The wildcards of ``path`` under one of this module's patterns (a path may be relative to a
    working directory or absolute); a path that does not fit is a ValueError naming it."""
    rx = _PARSERS.get(pattern) or _output_regex(pattern)
    m = rx.search(str(path).replace("\\", "/"))
    if not m:
        raise ValueError(f"{path}: not a path of the form {pattern}")
    return m.groupdict()


def parse_eval_file(path: str) -> tuple[str, str, str]:
    """(dataset, model_id, scheme) of an eval output."""
    w = parse(EVAL, path)
    return w["dataset"], w["model_id"], w["scheme"]


def parse_analysis_file(path: str) -> tuple[str, str, str]:
    """(dataset, model_id, scheme) of one analysis JSON."""
    w = parse(ANALYSIS_FILE, path)
    return w["dataset"], w["model_id"], w["scheme"]
