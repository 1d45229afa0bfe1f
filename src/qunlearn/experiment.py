"""The experiment: the validated config as one immutable, torch-free object that answers every
planning question (datasets, bases, arms, studies, evaluations, quantize and analysis jobs, each
job's params, resources). Built once per parse by ``workflow/rules/common.smk``
(``EXP = Experiment(config)``); the tests build the same object from the same dict.

Planning vocabulary:
- a *dataset* owns its data and bases unless ``source: reuse`` (then its *owner* does);
- an *arm* (paths.Arm) is one unlearned model: method x alpha x lr x epochs x loss variant;
- the *headline arm* of a method is the selected alpha at the method's lr, epochs and loss;
- the *alpha grid* of a method with two or more alphas is run where its selection is made;
- the *studies* (``sweeps.lr``, ``sweeps.epochs``, ``sweeps.loss_variant``) vary one coordinate of a
  headline arm;
- a *replicate* is a headline arm run with another seed of ``seeds`` (its id has ``seed~<n>``); the
  base seed (``seed``) is the arm itself. Replicates train from the same bases and read the base
  seed's alpha selection (the grid and the studies run at the base seed only: the seeds measure the
  variation of the tables' rows at fixed hyper-parameters); their unlearning, calibration (GPTQ/AWQ
  with ``calibration_seed + n + 1``), evaluations and analysis are their own;
- an *external model* (``datasets.<name>.external.<model name>``, model id ``external/<name>``) is an
  unlearned model made elsewhere: evaluated at every scheme of its dataset, quantized, analysed
  and reported beside the headline arms (docs "Bring your own unlearned model");
- a *preparation* is the preparatory model of a method whose spec names one (trait
  ``preparation``, e.g. the task vector's fine-tune on D_f): one job per (dataset, method, seed),
  shared by every arm of the method on that dataset (each alpha), which takes it as an input;
- an *attack job* (``attacks``) applies one point of a recovery attack's grid to a headline arm
  or a control base; its output is the derived id ``derived/<attack>/<k>~<v>.../of/<parent>``,
  evaluated at ``attacks.schemes`` like any model (docs "Recovery attacks");
- a *deployment* of a headline arm (or replicate) of a method whose spec declares ``deployments``
  (e.g. ihl_fila's ``adapter_on_quantized``) is the derived id ``derived/deploy/mode~<mode>/of/<arm>``
  (rule ``deploy``, qunlearn.deploy), evaluated at the arm's schemes;
- a dataset's *model* is the top-level ``model`` with its ``datasets.<name>.model`` keys over it (a
  reuse dataset has its owner's); a config whose trained datasets have more than one model is a
  *scale study* (``scale_study``: the rows of the report's scale tables);
- an *evaluation* is (dataset, model id, scheme).
"""

from __future__ import annotations

import dataclasses
import json
from functools import cached_property
from typing import Any

from . import deploy, external, paths
from .config import (
    MOVED_UNLEARN_KEYS,
    AttacksConfig,
    ComputeConfig,
    ConfigError,
    DatasetConfig,
    EvalConfig,
    GenerationConfig,
    ModelConfig,
    PretrainedConfig,
    ReportConfig,
    SeedsConfig,
    SweepsConfig,
    TrainConfig,
    UnlearnConfig,
    UnlearnSection,
    from_dict,
    seeds_config,
    to_dict,
)
from .paths import BASES, SELECTED, Arm, fmt_num
from .plugins import ATTACKS, METHODS, METRICS, AttackSpec, MethodSpec, Scheme
from .registries import PLUGIN_MODULES  # noqa: F401  (fills the registries)
from .report import catalog

STUDIES = ("alpha_grid", "lr", "epochs", "loss_variant")
SWEEP_COORDINATE = {"lr": "lr", "epochs": "epochs", "loss_variant": "loss"}  # study -> the Arm field it varies


def _distinct_texts(values, where: str) -> None:
    """Configured numbers that end up in paths must have distinct texts (fmt_num): two values
    sharing one would silently become one run."""
    seen: dict[str, Any] = {}
    for v in values:
        text = fmt_num(v)
        if text in seen:
            raise ConfigError(f"{where}: {text} is given twice ({seen[text]!r} and {v!r}); give each value once")
        seen[text] = v


class Experiment:
    """Every planning answer for one config (a plain dict, as Snakemake holds it)."""

    def __init__(self, config: dict):
        self.config = config
        self.seed: int = config.get("seed", 0)
        self.threads: int = config.get("threads", 1)
        raw_datasets = config.get("datasets") or {}
        if not raw_datasets:
            raise ConfigError("datasets: at least one dataset")
        self.datasets: dict[str, DatasetConfig] = {
            name: from_dict(DatasetConfig, ds, f"datasets.{name}") for name, ds in raw_datasets.items()
        }
        self.model: ModelConfig = from_dict(ModelConfig, config.get("model"), "model")
        # each dataset's own model: the top-level one with its datasets.<name>.model keys over it
        self.dataset_models: dict[str, ModelConfig] = {
            name: from_dict(ModelConfig, {**(config.get("model") or {}), **ds.model}, f"datasets.{name}.model")
            if ds.model is not None
            else self.model
            for name, ds in self.datasets.items()
        }
        self.train: TrainConfig = from_dict(TrainConfig, config.get("train"), "train")
        self.evaluate: EvalConfig = from_dict(EvalConfig, config.get("evaluate"), "evaluate")
        self.report: ReportConfig = from_dict(ReportConfig, config.get("report"), "report")
        self.compute: ComputeConfig = from_dict(ComputeConfig, config.get("compute"), "compute")
        for old, new in MOVED_UNLEARN_KEYS.items():
            if old in (config.get("unlearn") or {}):
                raise ConfigError(
                    f"unlearn.{old}: now a setting of each method that has it, "
                    f"unlearn.methods.<method>.{new} (docs: Configuration reference)"
                )
        self.unlearn: UnlearnSection = from_dict(UnlearnSection, config.get("unlearn"), "unlearn")
        self.sweeps: SweepsConfig = from_dict(SweepsConfig, config.get("sweeps"), "sweeps")
        self.seeds: SeedsConfig = seeds_config(config.get("seeds"), self.seed)
        raw_schemes = (config.get("quantize") or {}).get("schemes") or {}
        if not raw_schemes:
            raise ConfigError("quantize.schemes: at least one scheme")
        self.schemes: dict[str, Scheme] = {n: Scheme.from_config(n, s) for n, s in raw_schemes.items()}
        if not self.unlearn.methods:
            raise ConfigError("unlearn.methods: at least one method")
        self.method_specs: dict[str, MethodSpec] = {
            m: METHODS.get(m, f"unlearn.methods.{m}") for m in self.unlearn.methods
        }
        self.method_settings: dict[str, Any] = {
            m: spec.resolve(self.unlearn.methods[m], f"unlearn.methods.{m}") for m, spec in self.method_specs.items()
        }
        self.attacks: AttacksConfig = from_dict(AttacksConfig, config.get("attacks"), "attacks")
        self.attack_specs: dict[str, AttackSpec] = {a: ATTACKS.get(a, f"attacks.runs.{a}") for a in self.attacks.runs}
        self.attack_settings: dict[str, Any] = {
            a: spec.resolve(self.attacks.runs[a], f"attacks.runs.{a}") for a, spec in self.attack_specs.items()
        }
        self._check()

    # ---- checks across sections (the JSON schema and the dataclasses check each section) -------------
    def _check(self) -> None:
        for name, ds in self.datasets.items():
            if ds.source == "reuse":
                if ds.reuse not in self.datasets:
                    raise ConfigError(f"datasets.{name}.reuse: no dataset named {ds.reuse!r}")
                if self.datasets[ds.reuse].source == "reuse":
                    raise ConfigError(f"datasets.{name}.reuse: {ds.reuse!r} itself reuses another dataset")
                if ds.pretrained is not None:
                    raise ConfigError(
                        f"datasets.{name}.pretrained: a reuse dataset takes the models of "
                        f"{ds.reuse!r}; configure pretrained there"
                    )
            for m in ds.methods or []:
                self._known_method(m, f"datasets.{name}.methods")
            self._check_scheme_subset(f"datasets.{name}.schemes", ds.schemes)
            self.metric_groups(name)  # validates datasets.<n>.utility
        r = self.report
        for key in ("full_precision_scheme", "privleak_reference_scheme", "quantized_scheme"):
            self._known_scheme(getattr(r, key), f"report.{key}")
        for s in r.figure_schemes:
            self._known_scheme(s, "report.figure_schemes")
        if self.schemes[r.full_precision_scheme].quantizer != "none":
            raise ConfigError(f"report.full_precision_scheme: {r.full_precision_scheme!r} must use quantizer 'none'")
        for m in r.utility_constrained:
            self._known_method(m, "report.utility_constrained")
        for m in self.unlearn.methods:
            self._check_scheme_subset(f"unlearn.methods.{m}.schemes", self.method_settings[m].schemes)
            self.selection_source(next(iter(self.datasets)), m)  # alphas present or inherited
        self._check_method_splits()
        for s in self.unlearn.alpha_selection.schemes:
            self._known_scheme(s, "unlearn.alpha_selection.schemes")
        for m in self.seeds.methods or []:
            self._known_method(m, "seeds.methods")
        for study, sweep in self._sweeps():
            for m in sweep.methods:
                self._known_method(m, f"sweeps.{study}.methods")
                if self.method_specs[m].gradient_free:
                    raise ConfigError(
                        f"sweeps.{study}.methods: {m!r} is gradient-free (it edits the weights without the "
                        f"optimizer loop), so the {SWEEP_COORDINATE[study]} its arms vary is unused"
                    )
            for s in sweep.schemes:
                self._known_scheme(s, f"sweeps.{study}.schemes")
            for d in sweep.datasets or []:
                if d not in self.datasets:
                    raise ConfigError(f"sweeps.{study}.datasets: no dataset named {d!r}")
        for m in self.unlearn.methods:
            _distinct_texts(self.method_settings[m].alphas or [], f"unlearn.methods.{m}.alphas")
        if self.sweeps.lr is not None:
            _distinct_texts(self.sweeps.lr.lrs, "sweeps.lr.lrs")
        self._check_group_sizes()
        for arm in self.unlearn_jobs():
            self.unlearn_params(arm)  # validates every job's UnlearnConfig
        self._check_external()
        self._check_attacks()

    def _check_method_splits(self) -> None:
        """Every split a method's spec ``reads_splits`` is in the data of each dataset it runs on."""
        from .data import entities

        for ds in self.datasets:
            data_cfg = self.datasets[self.owner(ds)]
            for m in self.dataset_methods(ds):
                for split in self.method_specs[m].reads_splits:
                    if not entities.dataset_has_raw_split(data_cfg, split):
                        raise ConfigError(
                            f"unlearn.methods.{m}: method {m!r} reads the split raw/{split}, which dataset "
                            f"{ds!r} (source: {data_cfg.source}) does not have; drop the method or restrict it "
                            f"to other datasets (datasets.{ds}.methods)"
                        )

    def _check_attacks(self) -> None:
        """Names, schemes and datasets of the attacks section, and what each attack needs of the
        datasets it runs on (entity declarations; a relearning fraction that leaves records)."""
        from .data import entities

        a = self.attacks
        if not a.runs:
            return
        for m in self.attack_methods():
            self._known_method(m, "attacks.methods")
        for s in a.schemes:
            self._known_scheme(s, "attacks.schemes")
        for d in a.datasets or []:
            if d not in self.datasets:
                raise ConfigError(f"attacks.datasets: no dataset named {d!r}")
        for name, spec in self.attack_specs.items():
            settings = self.attack_settings[name]
            for ds in self.attack_datasets():
                data_cfg = self.datasets[self.owner(ds)]
                if spec.needs_entities and not entities.dataset_declares_entities(data_cfg):
                    raise ConfigError(
                        f"attacks.runs.{name}: dataset {ds!r} (source: {data_cfg.source}) does not declare "
                        "which entity each record and QA item belongs to; run it on a synthetic dataset "
                        "(attacks.datasets) or drop it"
                    )
                fraction = getattr(settings, "fraction", None)
                if fraction is not None and data_cfg.source == "synthetic":
                    records = entities.split_sizes(data_cfg.synthetic)[settings.split]
                    if int(fraction * records) < 1:
                        raise ConfigError(
                            f"attacks.runs.{name}.fraction: {fraction} of the {records} records of split "
                            f"{settings.split!r} of dataset {ds!r} is no record; raise it"
                        )

    def _check_external(self) -> None:
        """Names usable as an id segment and a table's method column (no method's name), and the
        files of local sources (the fetch job checks architecture and tokenizer against the target)."""
        for ds, cfg in self.datasets.items():
            for name, spec in cfg.external.items():
                where = f"datasets.{ds}.external.{name}"
                if not external.NAME.match(name):
                    raise ConfigError(
                        f"{where}: the name {name!r} must match {external.NAME.pattern} (it is a path segment)"
                    )
                if name in METHODS or name in self.unlearn.methods:
                    raise ConfigError(
                        f"{where}: {name!r} is an unlearning method's name; an external model's name is its "
                        "method column in the tables, so choose another"
                    )
                external.check_config(to_dict(spec), ds, name)

    def _check_group_sizes(self) -> None:
        """Every group size (a scheme's ``group_size``, a release's ``snap_group_size``) applied to a
        trained base divides the widths its layers' inputs have (``model.hidden_size``: attention and
        MLP inputs, lm_head; ``model.intermediate_size``: the MLP's down projection). Bases taken as
        published have widths unknown here: quantize.check_group_size checks them when a job loads one."""

        def check(group_size, where: str) -> None:
            bad = {k: w for k, w in widths.items() if group_size and w % group_size}
            if bad:
                k, w = next(iter(bad.items()))
                raise ConfigError(
                    f"{where}: group size {group_size} does not divide the layer width {k} = {w} of the trained "
                    f"model; use a divisor of {', '.join(str(v) for v in widths.values())} (or null: per channel)"
                )

        for ds in self.owned_datasets():
            if all(self.pretrained_base(ds, base) is not None for base in BASES):
                continue  # no base of this dataset is trained here
            m = self.model_of(ds)
            section = f"datasets.{ds}.model" if self.datasets[ds].model is not None else "model"
            widths = {f"{section}.hidden_size": m.hidden_size, f"{section}.intermediate_size": m.intermediate_size}
            for d in [d for d in self.datasets if self.owner(d) == ds]:
                release = self.datasets[d].release
                if release.snap_bits is not None:
                    check(release.snap_group_size, f"datasets.{d}.release.snap_group_size")
                for s in self.dataset_schemes(d):
                    group_size = getattr(self.schemes[s].settings, "group_size", None)
                    check(group_size, f"quantize.schemes.{s}.group_size")

    def _known_method(self, m: str, where: str) -> None:
        if m not in self.unlearn.methods:
            raise ConfigError(
                f"{where}: {m!r} is not configured under unlearn.methods "
                f"(configured: {', '.join(self.unlearn.methods)})"
            )

    def _known_scheme(self, s: str, where: str) -> None:
        if s not in self.schemes:
            raise ConfigError(
                f"{where}: {s!r} is not a scheme under quantize.schemes (configured: {', '.join(self.schemes)})"
            )

    def _check_scheme_subset(self, where: str, subset: list[str] | None) -> None:
        """A scheme list that narrows quantize.schemes (null = all): known names, and the report's
        full-precision and PrivLeak reference schemes among them."""
        if subset is None:
            return
        for s in subset:
            self._known_scheme(s, where)
        for key in ("full_precision_scheme", "privleak_reference_scheme"):
            if getattr(self.report, key) not in subset:
                raise ConfigError(f"{where}: must include report.{key} ({getattr(self.report, key)!r})")

    # ---- datasets and bases --------------------------------------------------------------------------
    def owner(self, dataset: str) -> str:
        """The dataset whose data and trained weights ``dataset`` uses (itself unless source: reuse)."""
        ds = self.datasets[dataset]
        return ds.reuse if ds.source == "reuse" else dataset

    def owned_datasets(self) -> list[str]:
        return [d for d in self.datasets if self.owner(d) == d]

    def pretrained_base(self, dataset: str, base: str) -> dict | None:
        """{hub_id|path, revision, dtype, trust_remote_code} when ``base`` of ``dataset`` (its owner's)
        is taken as published, else None (the base is trained)."""
        pre: PretrainedConfig | None = self.datasets[self.owner(dataset)].pretrained
        if pre is None or getattr(pre, base) is None:
            return None
        return {**to_dict(getattr(pre, base)), "dtype": pre.dtype, "trust_remote_code": pre.trust_remote_code}

    def model_of(self, dataset: str) -> ModelConfig:
        """The model of ``dataset``'s trained bases: its owner's ``model`` (the top-level section with
        the owner's ``datasets.<name>.model`` keys over it)."""
        return self.dataset_models[self.owner(dataset)]

    def trains_bases(self, dataset: str) -> bool:
        """Whether at least one base of ``dataset`` (its owner's) is trained here, not taken as published."""
        return any(self.pretrained_base(dataset, base) is None for base in BASES)

    def scale_study(self) -> dict[str, dict]:
        """A model-size study (docs "Configuration", the scale study): when the datasets whose bases
        are trained here have more than one model, dataset -> its model's shape, the parameter count
        of the LlamaForCausalLM built from it and the release's grid snap (``snap_bits``, None = as
        trained), for every such dataset (reuse datasets included); empty otherwise, so a config with
        one model has no scale rows."""
        from .resources import tiny_llama_params

        trained = [d for d in self.datasets if self.trains_bases(d)]
        if len({json.dumps(to_dict(self.model_of(d)), sort_keys=True) for d in trained}) < 2:
            return {}
        out = {}
        for d in trained:
            m = self.model_of(d)
            out[d] = {
                "hidden_size": m.hidden_size,
                "num_layers": m.num_layers,
                "num_heads": m.num_heads,
                "intermediate_size": m.intermediate_size,
                "params": tiny_llama_params(to_dict(m), self.datasets[self.owner(d)].tokenizer.vocab_size),
                "snap_bits": self.datasets[d].release.snap_bits,
            }
        return out

    def data_params(self, dataset: str) -> dict:
        """What a dataset's data depend on: its source section and its tokenizer (not its schemes,
        methods or release, so editing those does not rerun the data stage)."""
        ds = to_dict(self.datasets[dataset])
        return {f.name: ds[f.name] for f in dataclasses.fields(DatasetConfig) if f.metadata.get("data")}

    def release_params(self, dataset: str) -> dict:
        return to_dict(self.datasets[dataset].release)

    def data_dir(self, dataset: str) -> str:
        return paths.data_dir(self.owner(dataset))

    def trained_dir(self, dataset: str, base: str) -> str:
        return paths.trained_dir(self.owner(dataset), base, self.pretrained_base(dataset, base) is not None)

    # ---- methods and arms ----------------------------------------------------------------------------
    def dataset_methods(self, dataset: str) -> list[str]:
        allowed = self.datasets[dataset].methods
        return [m for m in self.unlearn.methods if allowed is None or m in allowed]

    def method_lr(self, method: str) -> str:
        lr = self.method_settings[method].lr
        return fmt_num(lr if lr is not None else self.unlearn.lr)

    def selection_source(self, dataset: str, method: str) -> tuple[str, str]:
        """(dataset, method) whose alpha grid decides ``method``'s alpha on ``dataset``: a `source:
        reuse` dataset takes the alpha selected on its owner; a method without alphas of its own takes
        its spec's ``objective``'s."""
        owner = self.owner(dataset)
        if self.method_settings[method].alphas is None:
            objective = self.method_specs[method].objective
            if objective is None or objective == method or objective not in self.unlearn.methods:
                raise ConfigError(
                    f"unlearn.methods.{method}.alphas: required (no configured objective to take "
                    "the selected alpha from)"
                )
            return self.selection_source(owner, objective)
        return owner, method

    def selection_file(self, dataset: str, method: str) -> str:
        """The alpha selection an arm of (dataset, method) with alpha 'selected' reads."""
        return paths.selection_file(*self.selection_source(dataset, method))

    def alphas(self, method: str) -> list[float] | None:
        return self.method_settings[method].alphas

    def grid_alphas(self, method: str) -> list[str]:
        """The alphas of ``method``'s grid; empty when there is nothing to choose (one alpha or none)."""
        alphas = self.alphas(method) or []
        return [fmt_num(a) for a in alphas] if len(alphas) > 1 else []

    def alpha_selection_params(self) -> dict:
        """What a selection depends on: the deciding scheme (the first) and the utility floor."""
        sel = self.unlearn.alpha_selection
        return {"schemes": sel.schemes[:1], "min_utility_fraction": sel.min_utility_fraction}

    def headline_arm(self, dataset: str, method: str, **override) -> Arm:
        """The arm a method's tables report: the selected alpha at the method's lr, epochs and loss."""
        arm = Arm(
            dataset, method, SELECTED, self.method_lr(method), str(self.unlearn.epochs), self.unlearn.loss_variant
        )
        return arm.replace(**override)

    def headline_arms(self, dataset: str | None = None) -> list[Arm]:
        return [
            self.headline_arm(ds, m)
            for ds in ([dataset] if dataset else list(self.datasets))
            for m in self.dataset_methods(ds)
        ]

    def replicate_seeds(self) -> list[int]:
        """The seeds other than the base seed, in config order."""
        return [s for s in self.seeds.values if s != self.seed]

    def replicate_arms(self, dataset: str | None = None) -> list[Arm]:
        """The headline arms of ``seeds.methods`` again with every other seed (empty with one seed)."""
        only = self.seeds.methods
        return [
            a.replace(seed=str(s))
            for s in self.replicate_seeds()
            for a in self.headline_arms(dataset)
            if only is None or a.method in only
        ]

    def model_seed(self, model_id: str) -> int:
        """The seed a model's jobs run with: a replicate's own, else the base seed."""
        seed = paths.seed_of(model_id)
        return int(seed) if seed else self.seed

    def grid_arms(self, dataset: str, method: str) -> list[Arm]:
        """The alpha grid of (dataset, method), run where the selection is made (selection_source)."""
        return [self.headline_arm(dataset, method, alpha=a) for a in self.grid_alphas(method)]

    def grid_twins(self, arm: Arm) -> list[Arm]:
        """The grid arms that differ from a selected ``arm`` only in alpha: the selected one among them
        is the model ``arm`` would train, so the unlearn job copies it (training is deterministic;
        tests/test_e2e.py checks the copy against a fresh run's bytes)."""
        if (
            arm.alpha != SELECTED
            or arm.seed
            or self.selection_source(arm.dataset, arm.method) != (arm.dataset, arm.method)
        ):
            return []
        return [
            t
            for t in self.grid_arms(arm.dataset, arm.method)
            if (t.lr, t.epochs, t.loss) == (arm.lr, arm.epochs, arm.loss)
        ]

    def _sweeps(self) -> list[tuple[str, Any]]:
        return [(study, getattr(self.sweeps, study)) for study in SWEEP_COORDINATE if getattr(self.sweeps, study)]

    def _sweep_datasets(self, sweep) -> list[str]:
        if sweep.datasets is not None:
            return list(sweep.datasets)
        return [d for d in self.datasets if self.datasets[d].source != "reuse"]

    def _sweep_values(self, study: str, sweep, method: str) -> list[str]:
        """The values a sweep gives its coordinate, with the headline arm's own value, in order."""
        if study == "lr":
            values = {fmt_num(v) for v in sweep.lrs} | {self.method_lr(method)}
            return sorted(values, key=float)
        if study == "epochs":
            return sorted({str(v) for v in sweep.epochs} | {str(self.unlearn.epochs)}, key=int)
        return sorted(set(sweep.variants) | {self.unlearn.loss_variant})

    def study_arms(self, study: str) -> list[Arm]:
        """The arms of one study; each sweep also contains the headline arm it varies around."""
        arms: list[Arm] = []
        if study == "alpha_grid":
            pairs = {self.selection_source(ds, m) for ds in self.datasets for m in self.dataset_methods(ds)}
            for _, sw in self._sweeps():
                pairs |= {self.selection_source(ds, m) for ds in self._sweep_datasets(sw) for m in sw.methods}
            for ds, m in sorted(pairs):
                arms += self.grid_arms(ds, m)
            return arms
        sweep = getattr(self.sweeps, study)
        if sweep is None:
            return []
        coordinate = SWEEP_COORDINATE[study]
        for ds in self._sweep_datasets(sweep):
            for m in sweep.methods:
                arms += [self.headline_arm(ds, m, **{coordinate: v}) for v in self._sweep_values(study, sweep, m)]
        return arms

    def study_schemes(self, study: str) -> list[str]:
        if study == "alpha_grid":
            return list(self.unlearn.alpha_selection.schemes)
        return list(getattr(self.sweeps, study).schemes)

    @cached_property
    def _unlearn_jobs(self) -> list[Arm]:
        arms = set(self.headline_arms()) | set(self.replicate_arms())
        for study in STUDIES:
            arms |= set(self.study_arms(study))
        return sorted(arms)

    def unlearn_jobs(self, dataset: str | None = None) -> list[Arm]:
        """Every unlearned model the config asks for (headline, replicates, alpha grid, sweeps), each once."""
        return [a for a in self._unlearn_jobs if dataset is None or a.dataset == dataset]

    def unlearn_params(self, arm: Arm) -> dict:
        """The resolved UnlearnConfig of one arm: the shared training settings, the arm's coordinates
        and exactly its method's own settings. A selected arm's alpha is read from its selection file
        at run time, so its params have no alpha."""
        shared = {k: v for k, v in to_dict(self.unlearn).items() if k in UnlearnSection.SHARED}
        alpha = 0.0 if arm.alpha == SELECTED else float(arm.alpha)
        raw = {
            **shared,
            "method": arm.method,
            "alpha": alpha,
            "lr": float(arm.lr),
            "epochs": int(arm.epochs),
            "loss_variant": arm.loss,
            "settings": self.method_settings[arm.method].own(),
        }
        resolved = to_dict(from_dict(UnlearnConfig, raw, f"unlearn.methods.{arm.method}"))
        if arm.alpha == SELECTED:
            del resolved["alpha"]
        for key, default in UnlearnConfig.PARAMS_IF_SET.items():
            if resolved[key] == default:
                del resolved[key]
        return resolved

    # ---- external models ----------------------------------------------------------------------------
    def external_ids(self, dataset: str) -> list[str]:
        """The model ids of ``dataset``'s external models (``external/<name>``), sorted."""
        return sorted(paths.external_id(n) for n in self.datasets[dataset].external)

    def external_names(self) -> list[str]:
        return sorted({n for ds in self.datasets.values() for n in ds.external})

    def external_params(self, dataset: str, name: str) -> dict:
        """What rule fetch_external depends on: the model's entry (source, revision, dtype, remote code)."""
        return to_dict(self.datasets[dataset].external[name])

    def external_inputs(self, dataset: str, name: str) -> dict[str, str]:
        """The released target (architecture reference, an adapter's base), the dataset's data (its
        tokenizer) and a local source directory (a hub source is fixed by its revision instead)."""
        inputs = {"target": paths.model_dir(dataset, "target"), "data": self.data_dir(dataset)}
        source = external.local_source(self.external_params(dataset, name))
        if source is not None:
            inputs["source"] = str(source)
        return inputs

    # ---- recovery attacks ---------------------------------------------------------------------------
    def attack_methods(self) -> list[str]:
        """The methods whose headline arms are attacked (null: report.utility_constrained)."""
        m = self.attacks.methods
        return list(self.report.utility_constrained if m is None else m)

    def attack_datasets(self) -> list[str]:
        if self.attacks.datasets is not None:
            return list(self.attacks.datasets)
        return [d for d in self.datasets if self.datasets[d].source != "reuse"]

    def attack_parents(self, dataset: str, attack: str) -> list[str]:
        """The model ids ``attack`` is applied to on ``dataset``: the headline arms of
        attack_methods, then the controls its spec allows (a fine-tuning attack always runs on the
        retrain model too: the re-teaching control)."""
        spec = self.attack_specs[attack]
        arms = [a.model_id for a in self.headline_arms(dataset) if a.method in self.attack_methods()]
        controls = [b for b in spec.controls if b in self.attacks.controls or (b == "retrain" and spec.finetunes)]
        return arms + controls

    def attack_points(self, attack: str) -> list[dict[str, str]]:
        return self.attack_settings[attack].points()

    @cached_property
    def _attack_jobs(self) -> list[tuple[str, str]]:
        """(dataset, derived model id) of every attack job."""
        jobs = []
        for ds in self.attack_datasets():
            for attack in self.attacks.runs:
                for parent in self.attack_parents(ds, attack):
                    for point in self.attack_points(attack):
                        jobs.append((ds, paths.derived_id(parent, attack, point)))
        return jobs

    def attack_jobs(self, dataset: str | None = None) -> list[str]:
        """The derived model ids of ``dataset``'s attack jobs (every dataset's when None), in plan order."""
        return [mid for ds, mid in self._attack_jobs if dataset is None or ds == dataset]

    def attacks_on(self, models: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """(dataset, derived id) of the attack jobs whose parent is one of ``models`` ((dataset,
        model id) pairs): what is made again when those models are."""
        return {(ds, mid) for ds, mid in self._attack_jobs if (ds, paths.parse_model_id(mid).parent) in models}

    def attack_schemes(self, dataset: str) -> list[str]:
        return [s for s in self.attacks.schemes if s in self.dataset_schemes(dataset)]

    def attack_inputs(self, dataset: str, model_id: str) -> dict[str, str]:
        """The attacked model, the dataset's data, and the released target when the attack reads it."""
        parts = paths.parse_model_id(model_id)
        inputs = {"model": paths.model_dir(dataset, parts.parent), "data": self.data_dir(dataset)}
        if self.attack_specs[parts.transform].needs_target:
            inputs["target"] = paths.model_dir(dataset, "target")
        return inputs

    def attack_params(self, model_id: str) -> dict:
        """What an attack job depends on: the attack, its point and its settings outside the grid
        (adding a point to a grid leaves the other points' jobs alone)."""
        parts = paths.parse_model_id(model_id)
        settings = self.attack_settings[parts.transform]
        grid = getattr(type(settings), "GRID", ())
        return {
            "attack": parts.transform,
            "point": dict(parts.settings),
            "settings": {k: v for k, v in to_dict(settings).items() if k not in grid},
        }

    def attack_report_evals(self) -> list[str]:
        """The evals the attack tables read: every attacked model's; every parent's and the
        target's at the attack schemes, full precision and every 4-bit scheme (robust retention's
        columns), so a scheme of other bits leaves the attack tables alone."""
        if not self._attack_jobs:
            return []
        columns = self.attack_table_schemes()
        attacked = {(ds, mid) for ds, mid in self._attack_jobs}
        parents = {(ds, "target") for ds in self.attack_datasets()}
        parents |= {(ds, paths.parse_model_id(mid).parent) for ds, mid in self._attack_jobs}
        return [
            paths.eval_file(ds, mid, s)
            for ds, mid, s in self.evaluations
            if (ds, mid) in attacked or ((ds, mid) in parents and s in columns)
        ]

    def attack_table_schemes(self) -> list[str]:
        """The schemes the attack tables report: the attack schemes, full precision and every
        4-bit scheme (robust retention's columns)."""
        columns = {*self.attacks.schemes, self.report.full_precision_scheme}
        return [s for s, v in self.schemes.items() if s in columns or v.nominal_bits == 4]

    def attacked_headlines(self) -> dict[str, dict[str, str]]:
        """dataset -> attacked method -> its headline model id (the robust-retention rows)."""
        return (
            {
                ds: {a.method: a.model_id for a in self.headline_arms(ds) if a.method in self.attack_methods()}
                for ds in self.attack_datasets()
            }
            if self.attacks.runs
            else {}
        )

    def attacks_for_report(self) -> dict:
        """What the attack tables need: per derived id its dataset, attack, point, strength key and
        value, parent id, and the root (the attacked headline arm or base); and the schemes."""
        rows = []
        # sorted: the order of keys in the config file must not change params (and so rerun the report)
        for ds, mid in sorted(self._attack_jobs):
            parts = paths.parse_model_id(mid)
            spec = self.attack_specs[parts.transform]
            point = dict(parts.settings)
            rows.append(
                {
                    "dataset": ds,
                    "model_id": mid,
                    "attack": parts.transform,
                    "point": point,
                    "strength": spec.strength,
                    "value": point[spec.strength],
                    "parent": parts.parent,
                    "finetunes": spec.finetunes,
                    "needs_entities": spec.needs_entities,
                }
            )
        # the halves held-out relearning trains on A and is scored on B by (its halves_seed)
        halves = {getattr(self.attack_settings[a], "halves_seed", None) for a in self.attack_specs}
        halves.discard(None)
        return {"jobs": rows, "schemes": list(self.attacks.schemes), "halves_seed": min(halves, default=0)}

    # ---- evaluations, quantize and analysis jobs -----------------------------------------------------
    def dataset_schemes(self, dataset: str) -> list[str]:
        allowed = self.datasets[dataset].schemes
        return [s for s in self.schemes if allowed is None or s in allowed]

    def headline_schemes(self, dataset: str, method: str) -> list[str]:
        """The schemes of a method's headline arm: the dataset's, narrowed by unlearn.methods.<m>.schemes."""
        only = self.method_settings[method].schemes
        return [s for s in self.dataset_schemes(dataset) if only is None or s in only]

    @cached_property
    def evaluations(self) -> list[tuple[str, str, str]]:
        """(dataset, model_id, scheme) of every evaluation: bases, external models, headline arms and
        their replicates at every scheme of their dataset (a method's ``schemes`` narrows its arm's),
        grid and sweep arms at their study's."""
        out = set()
        for ds in self.datasets:
            out |= {(ds, mid, s) for mid in (*BASES, *self.external_ids(ds)) for s in self.dataset_schemes(ds)}
        out |= {
            (a.dataset, a.model_id, s)
            for a in self.headline_arms() + self.replicate_arms()
            for s in self.headline_schemes(a.dataset, a.method)
        }
        for study in STUDIES:
            arms = self.study_arms(study)
            if arms:
                out |= {(a.dataset, a.model_id, s) for a in arms for s in self.study_schemes(study)}
        for ds, mid in self._attack_jobs:  # the attacked model, and its parent for the curve's origin
            parent = paths.parse_model_id(mid).parent
            out |= {(ds, m, s) for m in (mid, parent) for s in self.attack_schemes(ds)}
        for ds, mid in self._deploy_jobs:  # a deployment mode: at its arm's schemes
            out |= {(ds, mid, s) for s in self.model_schemes_of_arm(ds, paths.parse_model_id(mid).parent)}
        return sorted(out)

    # ---- deployment modes (spec trait ``deployments``) ---------------------------------------------
    @cached_property
    def _deploy_jobs(self) -> list[tuple[str, str]]:
        """(dataset, derived id) of every deployment: each deployment mode of each headline arm and
        replicate of a method whose spec declares ``deployments``."""
        return [
            (a.dataset, deploy.deploy_id(a.model_id, mode))
            for a in sorted(self.headline_arms() + self.replicate_arms())
            for mode in self.method_specs[a.method].deployments
        ]

    def deploy_jobs(self, dataset: str | None = None) -> list[str]:
        return [mid for ds, mid in self._deploy_jobs if dataset is None or ds == dataset]

    def model_schemes_of_arm(self, dataset: str, model_id: str) -> list[str]:
        """The schemes a headline arm or replicate is evaluated at (its method's headline schemes)."""
        return self.headline_schemes(dataset, paths.parse_model_id(model_id).method)

    def deploy_inputs(self, dataset: str, model_id: str) -> dict[str, str]:
        return {"model": paths.model_dir(dataset, paths.parse_model_id(model_id).parent)}

    def deploy_params(self, model_id: str) -> dict:
        return {"mode": dict(paths.parse_model_id(model_id).settings)["mode"]}

    def deployment_eval_files(self) -> list[str]:
        """The evaluations of every deployment (rule all asks for them; rule aggregate reads them
        into metrics.csv, the zoo table reports them beside their arms)."""
        jobs = set(self._deploy_jobs)
        return [paths.eval_file(ds, mid, s) for ds, mid, s in self.evaluations if (ds, mid) in jobs]

    @cached_property
    def _model_schemes(self) -> dict[tuple[str, str], list[str]]:
        table: dict[tuple[str, str], list[str]] = {}
        for ds, mid, scheme in self.evaluations:
            table.setdefault((ds, mid), []).append(scheme)
        return table

    def model_schemes(self, dataset: str, model_id: str) -> list[str]:
        """The schemes one model is evaluated at."""
        return list(self._model_schemes.get((dataset, model_id), []))

    def calibrated_schemes(self, dataset: str, model_id: str) -> list[str]:
        return [s for s in self.model_schemes(dataset, model_id) if self.schemes[s].calibrated]

    def eval_files(self, attacked: bool = True) -> list[str]:
        """Every evaluation's file; ``attacked=False``: without the attack jobs' models' (metrics.csv:
        the attack tables read those), but with the deployments' (metrics.csv marks them
        ``model == "deployment"``, outside the headline tables; the zoo table reports them)."""
        skip = set() if attacked else set(self._attack_jobs)
        return [paths.eval_file(ds, mid, s) for ds, mid, s in self.evaluations if (ds, mid) not in skip]

    def eval_model_input(self, dataset: str, model_id: str, scheme: str) -> str:
        """The checkpoint evaluate loads (calibrated schemes: the quantize job's output; else the model)."""
        if self.schemes[scheme].calibrated:
            return paths.quant_dir(dataset, model_id, scheme)
        return paths.model_dir(dataset, model_id)

    def analysis_model_ids(self, dataset: str) -> list[str]:
        """The models whose weight change is analysed: the headline arms, their replicates and the
        external models (grid and sweep arms are evaluated only)."""
        return sorted(
            [a.model_id for a in self.headline_arms(dataset) + self.replicate_arms(dataset)]
            + self.external_ids(dataset)
        )

    def analysis_dirs(self) -> list[str]:
        return [paths.analysis_dir(ds, mid) for ds in self.datasets for mid in self.analysis_model_ids(ds)]

    def analysis_inputs(self, dataset: str, model_id: str) -> dict[str, str]:
        """The released target, the model, and both quantized checkpoints per calibrated scheme."""
        inputs = {"target": paths.model_dir(dataset, "target"), "unlearned": paths.model_dir(dataset, model_id)}
        for s in self.calibrated_schemes(dataset, model_id):
            inputs[f"target_{s}"] = paths.quant_dir(dataset, "target", s)
            inputs[f"unlearned_{s}"] = paths.quant_dir(dataset, model_id, s)
        return inputs

    def analysis_params(self, dataset: str, model_id: str) -> dict[str, dict]:
        return {s: self.quantize_params(model_id, s) for s in self.model_schemes(dataset, model_id)}

    def unlearn_inputs(self, arm: Arm) -> dict[str, str]:
        inputs = {"base": paths.model_dir(arm.dataset, "target"), "data": self.data_dir(arm.dataset)}
        if self.method_specs[arm.method].preparation:
            inputs["prepared"] = self.prepared_dir(arm)
        if arm.alpha == SELECTED:
            inputs["selection"] = self.selection_file(arm.dataset, arm.method)
            for twin in self.grid_twins(arm):  # the grid arm it may copy
                inputs[f"twin_{twin.alpha}"] = paths.model_dir(arm.dataset, twin.model_id)
        return inputs

    # ---- preparations (a method whose spec names a ``preparation``) ---------------------------------
    def prepared_dir(self, arm: Arm) -> str:
        """The preparatory model an arm of a preparing method reads: its dataset's, at its seed."""
        return paths.prepared_dir(arm.dataset, arm.method, arm.seed or self.seed)

    def prepare_jobs(self) -> list[tuple[str, str, str]]:
        """(dataset, method, seed) of every preparation the unlearn jobs read, each once (one per
        dataset, method and seed, whatever the alphas)."""
        return sorted(
            {
                (a.dataset, a.method, a.seed or str(self.seed))
                for a in self.unlearn_jobs()
                if self.method_specs[a.method].preparation
            }
        )

    def prepare_dirs(self) -> list[str]:
        return [paths.prepared_dir(*job) for job in self.prepare_jobs()]

    def prepare_inputs(self, dataset: str) -> dict[str, str]:
        """The released target of the dataset (a reuse dataset's own release) and its data."""
        return {"base": paths.model_dir(dataset, "target"), "data": self.data_dir(dataset)}

    def prepare_params(self, dataset: str, method: str) -> dict:
        """What a preparation depends on: the unlearn section's shared settings and the method's own
        settings (its arms' params without the arm coordinates: alpha, lr, epochs and loss variant
        are not the preparation's; the method's preparation hook sets its training's own)."""
        params = self.unlearn_params(self.headline_arm(dataset, method).replace(alpha="0"))
        for key in ("alpha", "lr", "epochs", "loss_variant"):
            del params[key]
        return params

    def selection_inputs(self, dataset: str, method: str) -> dict[str, str]:
        """The grid's evals at the deciding scheme (none when a single alpha is configured)."""
        if not self.grid_alphas(method):
            return {}
        scheme = self.unlearn.alpha_selection.schemes[0]
        inputs = {
            f"alpha_{i}": paths.eval_file(dataset, arm.model_id, scheme)
            for i, arm in enumerate(self.grid_arms(dataset, method))
        }
        inputs["target"] = paths.eval_file(dataset, "target", scheme)
        return inputs

    def selection_map(self) -> dict[str, str]:
        """ "dataset/method" -> the selection file of every arm whose alpha is 'selected'."""
        return {
            f"{a.dataset}/{a.method}": self.selection_file(a.dataset, a.method)
            for a in self.unlearn_jobs()
            if a.alpha == SELECTED
        }

    def selection_files(self) -> list[str]:
        return sorted(set(self.selection_map().values()))

    # ---- params of the other stages ------------------------------------------------------------------
    def model_params(self, dataset: str) -> dict:
        """The model of ``dataset``'s trained bases (rule train_base's params)."""
        return to_dict(self.model_of(dataset))

    def max_length(self, dataset: str) -> int:
        """The sequence length of ``dataset``'s model (unlearning, attack and preparation batches)."""
        return self.model_of(dataset).max_length

    def train_params(self) -> dict:
        """The train section; micro_batch_size only when set (configs without it keep their jobs)."""
        params = to_dict(self.train)
        if params["micro_batch_size"] is None:
            del params["micro_batch_size"]
        return params

    def metric_groups(self, dataset: str) -> dict:
        """enabled_by -> the resolved settings of each optional metric group ``dataset`` switches on
        (``datasets.<n>.utility``: the paper's utility scores)."""
        out = {}
        for spec in METRICS.specs():
            raw = getattr(self.datasets[dataset], spec.enabled_by, None) if spec.enabled_by else None
            if raw is not None and spec.enabled_by not in out:
                settings = spec.resolve(raw, f"datasets.{dataset}.{spec.enabled_by}")
                if settings.enabled:
                    out[spec.enabled_by] = settings
        return out

    def evaluate_params(self, dataset: str | None = None) -> dict:
        """The evaluate section, plus the metric groups ``dataset`` enables (absent when off, so a
        dataset without them keeps its params)."""
        groups = self.metric_groups(dataset) if dataset is not None else {}
        return {**to_dict(self.evaluate), **{k: to_dict(v) for k, v in groups.items()}}

    def train_check_eval_params(self) -> dict:
        """The evaluation settings the memorisation check of train_base uses: the generation part of
        EvalConfig (so changing the Min-K fraction reruns evaluations but not training)."""
        full = to_dict(self.evaluate)
        return {f.name: full[f.name] for f in dataclasses.fields(GenerationConfig)}

    def scheme_params(self, scheme: str) -> dict:
        return self.schemes[scheme].resolved()

    def quantize_params(self, model_id: str, scheme: str) -> dict:
        """A scheme's settings for one model (its quantize, evaluate and analysis jobs): a replicate
        with seed n draws its calibration sample with ``calibration_seed + n + 1`` (never the base
        seed's, and distinct per seed); every other model gets the scheme's own settings."""
        params = self.scheme_params(scheme)
        seed = paths.seed_of(model_id)
        if seed and "calibration_seed" in params:
            params["calibration_seed"] += int(seed) + 1
        return params

    def calibrated_scheme_names(self) -> list[str]:
        return [s for s, v in self.schemes.items() if v.calibrated]

    def scheme_table(self) -> dict[str, dict]:
        """scheme -> {quantizer, nominal_bits, **resolved settings}: what the reports need to know."""
        return {n: {**s.resolved(), "nominal_bits": s.nominal_bits} for n, s in self.schemes.items()}

    def scheme_bits(self) -> dict[str, int | None]:
        return {n: s.resolved().get("bits") for n, s in self.schemes.items()}

    def report_params(self) -> dict:
        return to_dict(self.report)

    def report_table_params(self) -> dict:
        """The report settings the tables depend on (a figure-only setting reruns only the figures)."""
        full = to_dict(self.report)
        return {f.name: full[f.name] for f in dataclasses.fields(ReportConfig) if not f.metadata.get("figure_only")}

    def report_figure_params(self) -> dict:
        full = to_dict(self.report)
        return {
            f.name: full[f.name]
            for f in dataclasses.fields(ReportConfig)
            if f.metadata.get("figure_only") or f.metadata.get("figures")
        }

    def headline_ids(self) -> dict[str, list[str]]:
        """dataset -> the models the headline tables report beside the bases: headline arms and
        external models."""
        # sorted: the order of keys in the config file must not change params (and so rerun the report)
        return {
            ds: sorted([a.model_id for a in self.headline_arms(ds) + self.replicate_arms(ds)] + self.external_ids(ds))
            for ds in self.datasets
        }

    def report_conditions(self) -> frozenset[str]:
        """The conditions of the report catalog's conditional items (``catalog.Item.requires``, a
        MethodSpec trait) that hold here: some configured method's spec has the trait. Rules make
        the conditional items only then (e.g. qa_comparison with a quantization-aware method)."""
        methods = {a.method for a in self.headline_arms()}
        return frozenset(c for c in catalog.CONDITIONS if any(getattr(self.method_specs[m], c) for m in methods))

    def qa_comparison_methods(self) -> list[str]:
        """The methods of the qa_comparison table: each quantization-aware method (spec trait), its
        objective (spec ``objective``) and the objective's other variants that mask or quantize
        (traits ``saliency_masked``, ``quantization_aware``: SURE), where configured."""
        objectives = {s.objective for s in self.method_specs.values() if s.quantization_aware and s.objective}
        return [
            m
            for m, s in self.method_specs.items()
            if m in objectives or (s.objective in objectives and (s.saliency_masked or s.quantization_aware))
        ]

    def qa_comparison_for_report(self) -> dict:
        """What the qa_comparison table needs ({} without a quantization-aware method): its arms
        (the headline arm of each of :meth:`qa_comparison_methods` and their lr-sweep arms; sweep
        arms are not attacked, so only the headline arms can have a worst case under attack), which
        of them are headline arms, and the utility floor (``unlearn.alpha_selection.
        min_utility_fraction``: equal utility is the alpha selection's floor)."""
        methods = set(self.qa_comparison_methods())
        if not methods:
            return {}
        headline = sorted(a for a in self.headline_arms() if a.method in methods)
        swept = sorted(set(a for a in self.study_arms("lr") if a.method in methods) - set(headline))
        return {
            "arms": [[a.dataset, a.model_id] for a in headline + swept],
            "headline": [[a.dataset, a.model_id] for a in headline],
            "min_utility_fraction": self.unlearn.alpha_selection.min_utility_fraction,
        }

    def studies_for_report(self) -> dict:
        """What the study tables need: each study's arms and schemes, and the headline arms."""
        out: dict[str, dict] = {
            "headline": {"arms": [[a.dataset, a.model_id] for a in sorted(self.headline_arms())], "schemes": []}
        }
        for study in STUDIES:
            arms = sorted(self.study_arms(study))
            out[study] = {
                "arms": [[a.dataset, a.model_id] for a in arms],
                "schemes": self.study_schemes(study) if arms else [],
            }
        return out
