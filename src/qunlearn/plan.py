"""The experiment grid as the workflow sees it: config checks across sections, the job list, and
each job's own config slice. Pure Python (no torch import), so ``snakemake -n`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from .config import (
    AlphaSelectionConfig,
    ComputeConfig,
    ConfigError,
    DatasetConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    PretrainedConfig,
    ReportConfig,
    SchemeConfig,
    SweepsConfig,
    TrainConfig,
    UnlearnConfig,
    from_dict,
    to_dict,
)

BASES = ("target", "retrain")
SELECTED = "selected"  # alpha of an arm whose alpha comes from the selection rule
UNLEARN_SHARED_KEYS = ("batch_size", "npo_beta", "weight_decay", "max_grad_norm", "sure_percentile", "sure_level",
                       *("optimizer", "reference_device", "gradient_checkpointing"))
# Memory settings (README "Real scale"): part of a job's slice only when set to a non-default value,
# so configs that do not use them keep their params (and finished jobs) unchanged.
UNLEARN_MEMORY_DEFAULTS = {"optimizer": "adamw", "reference_device": "same", "gradient_checkpointing": False}
STUDIES = ("alpha_grid", "lr", "epochs", "loss_variant")


def fmt_num(x: float) -> str:
    """Canonical text of a number in paths and tables: 1 -> '1', 3e-05 -> '3e-05', 0.5 -> '0.5'."""
    return f"{float(x):g}"


@dataclass(frozen=True, order=True)
class Arm:
    """One unlearned model: a method with one alpha (a number, or 'selected'), lr, epochs, loss variant."""

    dataset: str
    method: str
    alpha: str
    lr: str
    epochs: str
    loss: str

    @property
    def model_id(self) -> str:
        return (f"unlearn/{self.method}/alpha~{self.alpha}/lr~{self.lr}/epochs~{self.epochs}"
                f"/loss~{self.loss}")


def check_config(config: dict) -> None:
    """Cross-section checks the JSON schema cannot express; raises ConfigError naming the key."""
    datasets = config.get("datasets") or {}
    methods = (config.get("unlearn") or {}).get("methods") or {}
    schemes = (config.get("quantize") or {}).get("schemes") or {}
    for name, ds in datasets.items():
        cfg = from_dict(DatasetConfig, ds, f"datasets.{name}")
        if cfg.source == "reuse":
            if cfg.reuse not in datasets:
                raise ConfigError(f"datasets.{name}.reuse: no dataset named {cfg.reuse!r}")
            if datasets[cfg.reuse].get("source", "synthetic") == "reuse":
                raise ConfigError(f"datasets.{name}.reuse: {cfg.reuse!r} itself reuses another dataset")
            if cfg.pretrained is not None:
                raise ConfigError(f"datasets.{name}.pretrained: a reuse dataset takes the models of "
                                  f"{cfg.reuse!r}; configure pretrained there")
        for m in ds.get("methods") or []:
            if m not in methods:
                raise ConfigError(f"datasets.{name}.methods: {m!r} is not configured under unlearn.methods")
    from_dict(ModelConfig, config.get("model"), "model")
    from_dict(ComputeConfig, config.get("compute"), "compute")
    from_dict(TrainConfig, config.get("train"), "train")
    from_dict(EvalConfig, config.get("evaluate"), "evaluate")
    report = from_dict(ReportConfig, config.get("report"), "report")
    for key in ("full_precision_scheme", "privleak_reference_scheme", "quantized_scheme"):
        if getattr(report, key) not in schemes:
            raise ConfigError(f"report.{key}: {getattr(report, key)!r} is not a scheme under quantize.schemes")
    for s in report.figure_schemes:
        if s not in schemes:
            raise ConfigError(f"report.figure_schemes: {s!r} is not a scheme under quantize.schemes")
    if schemes.get(report.full_precision_scheme, {}).get("quantizer") != "none":
        raise ConfigError(f"report.full_precision_scheme: {report.full_precision_scheme!r} must use quantizer 'none'")
    for name, s in schemes.items():
        from_dict(SchemeConfig, s, f"quantize.schemes.{name}")  # per-quantizer keys and values
    for name in datasets:
        _check_scheme_subset(f"datasets.{name}.schemes", datasets[name].get("schemes"), schemes, report)
    _check_unlearn(config, schemes, report)


def _check_scheme_subset(where: str, subset: list[str] | None, schemes: dict, report: ReportConfig) -> None:
    """A scheme list that narrows quantize.schemes (null = all): known names, and the report's
    full-precision and PrivLeak reference schemes among them."""
    if subset is None:
        return
    for s in subset:
        if s not in schemes:
            raise ConfigError(f"{where}: {s!r} is not a scheme under quantize.schemes")
    for key in ("full_precision_scheme", "privleak_reference_scheme"):
        if getattr(report, key) not in subset:
            raise ConfigError(f"{where}: must include report.{key} ({getattr(report, key)!r})")


def _check_unlearn(config: dict, schemes: dict, report: ReportConfig) -> None:
    methods = config["unlearn"]["methods"]
    for m in methods:
        _check_scheme_subset(f"unlearn.methods.{m}.schemes", method_config(config, m).schemes, schemes, report)
        selection_source(config, next(iter(config["datasets"])), m)  # alphas present or inherited
    sel = alpha_selection(config)
    for s in sel.schemes:
        if s not in schemes:
            raise ConfigError(f"unlearn.alpha_selection.schemes: {s!r} is not a scheme under quantize.schemes")
    sw = sweeps(config)
    for study in ("lr", "epochs", "loss_variant"):
        cfg = getattr(sw, study)
        if cfg is None:
            continue
        for m in cfg.methods:
            if m not in methods:
                raise ConfigError(f"sweeps.{study}.methods: {m!r} is not configured under unlearn.methods")
        for s in cfg.schemes:
            if s not in schemes:
                raise ConfigError(f"sweeps.{study}.schemes: {s!r} is not a scheme under quantize.schemes")
        for d in cfg.datasets or []:
            if d not in config["datasets"]:
                raise ConfigError(f"sweeps.{study}.datasets: no dataset named {d!r}")
    for arm in unlearn_jobs(config):
        unlearn_slice(config, arm)  # validates every job's UnlearnConfig


def dataset_owner(config: dict, dataset: str) -> str:
    """The dataset whose data and trained weights ``dataset`` uses (itself unless source: reuse)."""
    ds = config["datasets"][dataset]
    return ds["reuse"] if ds.get("source", "synthetic") == "reuse" else dataset


def pretrained_base(config: dict, dataset: str, base: str) -> dict | None:
    """{hub_id|path, revision, dtype, trust_remote_code} when ``base`` of ``dataset`` (its owner's)
    is taken as published (datasets.<name>.pretrained.<base>), else None: the base is trained."""
    owner = dataset_owner(config, dataset)
    pre = config["datasets"][owner].get("pretrained") or {}
    if not pre.get(base):
        return None
    cfg = to_dict(from_dict(PretrainedConfig, pre, f"datasets.{owner}.pretrained"))
    return {**cfg[base], "dtype": cfg["dtype"], "trust_remote_code": cfg["trust_remote_code"]}


def owned_datasets(config: dict) -> list[str]:
    return [d for d in config["datasets"] if dataset_owner(config, d) == d]


def dataset_methods(config: dict, dataset: str) -> list[str]:
    allowed = config["datasets"][dataset].get("methods")
    return [m for m in config["unlearn"]["methods"] if allowed is None or m in allowed]


def method_config(config: dict, method: str) -> MethodConfig:
    return from_dict(MethodConfig, config["unlearn"]["methods"][method], f"unlearn.methods.{method}")


def base_objective(method: str) -> str:
    """The objective a SURE method masks (ga_gdr_sure -> ga_gdr); other methods are their own."""
    return method[: -len("_sure")] if is_saliency_method(method) else method


def method_lr(config: dict, method: str) -> str:
    lr = method_config(config, method).lr
    return fmt_num(lr if lr is not None else config["unlearn"].get("lr", UnlearnConfig.lr))


def default_epochs(config: dict) -> str:
    return str(config["unlearn"].get("epochs", UnlearnConfig.epochs))


def default_loss(config: dict) -> str:
    return config["unlearn"].get("loss_variant", UnlearnConfig.loss_variant)


def selection_source(config: dict, dataset: str, method: str) -> tuple[str, str]:
    """(dataset, method) whose alpha grid decides ``method``'s alpha on ``dataset``: a `source: reuse`
    dataset takes the alpha selected on the dataset it reuses (the ablation differs only in its
    release); a SURE method without alphas of its own takes its objective's."""
    owner = dataset_owner(config, dataset)
    if method_config(config, method).alphas is None:
        base = base_objective(method)
        if base == method or base not in config["unlearn"]["methods"]:
            raise ConfigError(f"unlearn.methods.{method}.alphas: required (no objective {base!r} to take "
                              "the selected alpha from)")
        return selection_source(config, owner, base)
    return owner, method


def grid_alphas(config: dict, method: str) -> list[str]:
    """The alphas of ``method``'s grid; empty when there is nothing to choose (one alpha or none)."""
    alphas = method_config(config, method).alphas or []
    return [fmt_num(a) for a in alphas] if len(alphas) > 1 else []


def alpha_selection(config: dict) -> AlphaSelectionConfig:
    return from_dict(AlphaSelectionConfig, config["unlearn"].get("alpha_selection"), "unlearn.alpha_selection")


def alpha_selection_slice(config: dict) -> dict:
    """What a selection depends on: the deciding scheme (the first) and the utility floor."""
    sel = alpha_selection(config)
    return {"schemes": sel.schemes[:1], "min_utility_fraction": sel.min_utility_fraction}


def headline_arm(config: dict, dataset: str, method: str, **override) -> Arm:
    """The arm a method's tables report: the selected alpha at the method's lr, epochs and loss."""
    arm = dict(dataset=dataset, method=method, alpha=SELECTED, lr=method_lr(config, method),
               epochs=default_epochs(config), loss=default_loss(config))
    arm.update(override)
    return Arm(**arm)


def grid_arms(config: dict, dataset: str, method: str) -> list[Arm]:
    """The alpha grid of (dataset, method), run where the selection is made (see selection_source)."""
    return [headline_arm(config, dataset, method, alpha=a) for a in grid_alphas(config, method)]


def grid_twins(config: dict, arm: Arm) -> list[Arm]:
    """The grid arms that differ from a selected ``arm`` only in alpha: the selected one among them
    is the model ``arm`` would train, so the unlearn job copies it instead (training is
    deterministic; tests/test_e2e.py checks the copy against a fresh run's bytes)."""
    if arm.alpha != SELECTED or selection_source(config, arm.dataset, arm.method) != (arm.dataset, arm.method):
        return []
    twins = grid_arms(config, arm.dataset, arm.method)
    return [t for t in twins if (t.lr, t.epochs, t.loss) == (arm.lr, arm.epochs, arm.loss)]


def sweeps(config: dict) -> SweepsConfig:
    return from_dict(SweepsConfig, config.get("sweeps"), "sweeps")


def _sweep_datasets(config: dict, sweep) -> list[str]:
    if sweep.datasets is not None:
        return list(sweep.datasets)
    return [d for d in config["datasets"] if config["datasets"][d].get("source", "synthetic") != "reuse"]


def study_arms(config: dict, study: str) -> list[Arm]:
    """The arms of one study; each study also contains the headline arm it varies around."""
    arms: list[Arm] = []
    if study == "alpha_grid":
        pairs = {selection_source(config, ds, m) for ds in config["datasets"] for m in dataset_methods(config, ds)}
        for sw in (s for s in (sweeps(config).lr, sweeps(config).epochs, sweeps(config).loss_variant) if s):
            pairs |= {selection_source(config, ds, m) for ds in _sweep_datasets(config, sw) for m in sw.methods}
        for ds, m in sorted(pairs):
            arms += grid_arms(config, ds, m)
        return arms
    sw = getattr(sweeps(config), study)
    if sw is None:
        return []
    for ds in _sweep_datasets(config, sw):
        for m in sw.methods:
            if study == "lr":
                values = {fmt_num(v) for v in sw.lrs} | {method_lr(config, m)}
                arms += [headline_arm(config, ds, m, lr=v) for v in sorted(values, key=float)]
            elif study == "epochs":
                values = {str(v) for v in sw.epochs} | {default_epochs(config)}
                arms += [headline_arm(config, ds, m, epochs=v) for v in sorted(values, key=int)]
            else:
                values = set(sw.variants) | {default_loss(config)}
                arms += [headline_arm(config, ds, m, loss=v) for v in sorted(values)]
    return arms


def study_schemes(config: dict, study: str) -> list[str]:
    if study == "alpha_grid":
        return alpha_selection(config).schemes
    return getattr(sweeps(config), study).schemes


def headline_arms(config: dict, dataset: str | None = None) -> list[Arm]:
    return [headline_arm(config, ds, m) for ds in ([dataset] if dataset else list(config["datasets"]))
            for m in dataset_methods(config, ds)]


def unlearn_jobs(config: dict, dataset: str | None = None) -> list[Arm]:
    """Every unlearned model the config asks for (headline, alpha grid, sweeps), each once."""
    arms = set(headline_arms(config))
    for study in STUDIES:
        arms |= set(study_arms(config, study))
    return sorted(a for a in arms if dataset is None or a.dataset == dataset)


def evaluations(config: dict) -> list[tuple[str, str, str]]:
    """(dataset, model_id, scheme) of every evaluation: bases and headline arms at every scheme of
    their dataset (``dataset_schemes``; a method's ``schemes`` narrows its arm's), grid and sweep
    arms at their study's schemes."""
    out = set()
    for ds in config["datasets"]:
        out |= {(ds, base, s) for base in BASES for s in dataset_schemes(config, ds)}
    out |= {(a.dataset, a.model_id, s) for a in headline_arms(config) for s in headline_schemes(config, a.dataset, a.method)}
    for study in STUDIES:
        study_arm_list = study_arms(config, study)
        if study_arm_list:
            out |= {(a.dataset, a.model_id, s) for a in study_arm_list for s in study_schemes(config, study)}
    return sorted(out)


def unlearn_slice(config: dict, arm: Arm) -> dict:
    """The resolved UnlearnConfig of one arm (only what it depends on). A selected arm's alpha is
    read from its selection file at run time, so its slice has no alpha."""
    unl = config["unlearn"]
    raw = {k: unl[k] for k in UNLEARN_SHARED_KEYS if k in unl}
    alpha = 0.0 if arm.alpha == SELECTED else float(arm.alpha)
    raw.update(method=arm.method, alpha=alpha, lr=float(arm.lr), epochs=int(arm.epochs), loss_variant=arm.loss)
    resolved = to_dict(from_dict(UnlearnConfig, raw, f"unlearn.methods.{arm.method}"))
    if not is_saliency_method(arm.method):  # SURE settings are not part of other methods' jobs
        resolved = {k: v for k, v in resolved.items() if not k.startswith("sure_")}
    for k, default in UNLEARN_MEMORY_DEFAULTS.items():
        if resolved.get(k) == default:
            del resolved[k]
    if arm.alpha == SELECTED:
        del resolved["alpha"]
    return resolved


def is_saliency_method(method: str) -> bool:
    """SURE methods are named <objective>_sure (tests/test_losses.py checks it against the registry)."""
    return method.endswith("_sure")


def model_ids(config: dict, dataset: str) -> list[str]:
    return list(BASES) + [a.model_id for a in unlearn_jobs(config, dataset)]


def parse_model_id(model_id: str) -> dict:
    """Inverse of Arm.model_id (and 'target'/'retrain'): the fields of an unlearned model's path."""
    if model_id in BASES:
        return {"model": model_id, "method": "", "alpha": "", "lr": "", "epochs": "", "loss": ""}
    parts = model_id.split("/")
    if len(parts) != 6 or parts[0] != "unlearn":
        raise ValueError(f"{model_id!r}: not a model id (target | retrain | unlearn/<method>/alpha~A/lr~L/epochs~E/loss~V)")
    fields = {"model": "unlearn", "method": parts[1]}
    for part, key in zip(parts[2:], ("alpha", "lr", "epochs", "loss")):
        prefix = f"{key}~"
        if not part.startswith(prefix):
            raise ValueError(f"{model_id!r}: expected {prefix}<value> where {part!r} stands")
        fields[key] = part[len(prefix):]
    return fields


def stage_slice(config: dict, section: str, cls) -> dict:
    """A whole-section stage config with defaults resolved (model, train, evaluate, report)."""
    return to_dict(from_dict(cls, config.get(section), section))


# The evaluation settings that the memorisation check of train_base uses (and nothing else, so
# that e.g. changing the Min-K fraction reruns evaluations but not training).
TRAIN_CHECK_EVAL_KEYS = ("batch_size", "knowmem_max_new_tokens", "verbmem_max_new_tokens")


def train_check_eval_slice(config: dict) -> dict:
    full = stage_slice(config, "evaluate", EvalConfig)
    return {k: full[k] for k in TRAIN_CHECK_EVAL_KEYS}


def scheme_config(config: dict, scheme: str) -> SchemeConfig:
    return from_dict(SchemeConfig, config["quantize"]["schemes"][scheme], f"quantize.schemes.{scheme}")


def scheme_slice(config: dict, scheme: str) -> dict:
    """The resolved settings of one scheme: ``quantizer`` + that quantizer's keys (defaults filled)."""
    return scheme_config(config, scheme).resolved()


def dataset_schemes(config: dict, dataset: str) -> list[str]:
    """The schemes evaluated on ``dataset`` (datasets.<name>.schemes; null = every scheme)."""
    allowed = config["datasets"][dataset].get("schemes")
    return [s for s in config["quantize"]["schemes"] if allowed is None or s in allowed]


def headline_schemes(config: dict, dataset: str, method: str) -> list[str]:
    """The schemes of a method's headline arm: the dataset's, narrowed by unlearn.methods.<m>.schemes."""
    only = method_config(config, method).schemes
    return [s for s in dataset_schemes(config, dataset) if only is None or s in only]


def model_schemes(config: dict, dataset: str, model_id: str) -> list[str]:
    """The schemes one model is evaluated at (``evaluations``: bases and headline arms at the
    dataset's schemes, narrowed per method; grid and sweep arms at their study's)."""
    return [s for ds, mid, s in evaluations(config) if ds == dataset and mid == model_id]


def is_calibrated(config: dict, scheme: str) -> bool:
    """Whether the scheme needs calibration data (then a cached quantize job makes its checkpoint)."""
    return scheme_config(config, scheme).calibrated


def unlearned_model_ids(config: dict, dataset: str) -> list[str]:
    return [mid for mid in model_ids(config, dataset) if mid not in BASES]


def analysis_model_ids(config: dict, dataset: str) -> list[str]:
    """The unlearned models whose weight change is analysed: the headline arms (the methods'
    reported models; grid and sweep arms are evaluated only)."""
    return sorted(a.model_id for a in headline_arms(config, dataset))


def analysis_targets(config: dict) -> list[tuple[str, str, str]]:
    """(dataset, unlearned model_id, scheme) of every weight-change analysis."""
    return [(ds, mid, s) for ds in config["datasets"] for mid in analysis_model_ids(config, ds)
            for s in model_schemes(config, ds, mid)]


def scheme_table(config: dict) -> dict:
    """scheme -> {quantizer, nominal_bits, **resolved settings}: what the reports need to know."""
    out = {}
    for name in config["quantize"]["schemes"]:
        scfg = scheme_config(config, name)
        out[name] = {**scfg.resolved(), "nominal_bits": scfg.nominal_bits}
    return out




def headline_ids(config: dict) -> dict[str, list[str]]:
    # sorted: the order of keys in the config file must not change params (and so rerun the report)
    return {ds: sorted(a.model_id for a in headline_arms(config, ds)) for ds in config["datasets"]}


def studies_for_report(config: dict) -> dict:
    """What the study tables need: each study's arms and schemes, and the headline arms."""
    out = {"headline": {"arms": [[a.dataset, a.model_id] for a in sorted(headline_arms(config))], "schemes": []}}
    for study in STUDIES:
        arms = sorted(study_arms(config, study))
        out[study] = {"arms": [[a.dataset, a.model_id] for a in arms],
                      "schemes": study_schemes(config, study) if arms else []}
    return out


# Report settings that only change how figures look: rule `figures` gets them, rule `aggregate`
# (the tables) does not, so editing one reruns the figures alone. figure_schemes also orders the
# tables' scheme columns, so it belongs to both.
FIGURE_ONLY_KEYS = ("figure_dpi",)
FIGURE_KEYS = ("figure_schemes", "full_precision_scheme", "quantized_scheme", *FIGURE_ONLY_KEYS)


def report_table_slice(config: dict) -> dict:
    full = stage_slice(config, "report", ReportConfig)
    return {k: v for k, v in full.items() if k not in FIGURE_ONLY_KEYS}


def report_figure_slice(config: dict) -> dict:
    full = stage_slice(config, "report", ReportConfig)
    return {k: full[k] for k in FIGURE_KEYS}
