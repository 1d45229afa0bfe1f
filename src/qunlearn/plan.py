"""The experiment grid as the workflow sees it: config checks across sections, the job list, and
each job's own config slice. Pure Python (no torch import), so ``snakemake -n`` stays fast."""

from __future__ import annotations

from dataclasses import dataclass

from .config import (
    ComputeConfig,
    ConfigError,
    DatasetConfig,
    EvalConfig,
    ModelConfig,
    PretrainedConfig,
    ReportConfig,
    SchemeConfig,
    TrainConfig,
    UnlearnConfig,
    from_dict,
    to_dict,
)

BASES = ("target", "retrain")
UNLEARN_SHARED_KEYS = ("epochs", "batch_size", "npo_beta", "loss_variant", "weight_decay", "max_grad_norm",
                       "sure_percentile", "sure_level", *("optimizer", "reference_device", "gradient_checkpointing"))
# Memory settings (README "Real scale"): part of a job's slice only when set to a non-default value,
# so configs that do not use them keep their params (and finished jobs) unchanged.
UNLEARN_MEMORY_DEFAULTS = {"optimizer": "adamw", "reference_device": "same", "gradient_checkpointing": False}


def fmt_num(x: float) -> str:
    """Canonical text of a number in paths and tables: 1 -> '1', 3e-05 -> '3e-05', 0.5 -> '0.5'."""
    return f"{float(x):g}"


@dataclass(frozen=True)
class UnlearnJob:
    dataset: str
    method: str
    alpha: str
    lr: str

    @property
    def model_id(self) -> str:
        return f"unlearn/{self.method}/alpha~{self.alpha}/lr~{self.lr}"


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
    for key in ("full_precision_scheme", "privleak_reference_scheme"):
        if getattr(report, key) not in schemes:
            raise ConfigError(f"report.{key}: {getattr(report, key)!r} is not a scheme under quantize.schemes")
    for s in report.figure_schemes:
        if s not in schemes:
            raise ConfigError(f"report.figure_schemes: {s!r} is not a scheme under quantize.schemes")
    if schemes.get(report.full_precision_scheme, {}).get("quantizer") != "none":
        raise ConfigError(f"report.full_precision_scheme: {report.full_precision_scheme!r} must use quantizer 'none'")
    for name, s in schemes.items():
        scfg = from_dict(SchemeConfig, s, f"quantize.schemes.{name}")
        if scfg.quantizer == "rtn" and scfg.bits is None:
            raise ConfigError(f"quantize.schemes.{name}.bits: quantizer 'rtn' needs bits (2-8)")
    for job in unlearn_jobs(config):
        unlearn_slice(config, job)  # validates every job's UnlearnConfig


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


def unlearn_jobs(config: dict, dataset: str | None = None) -> list[UnlearnJob]:
    unl = config["unlearn"]
    jobs = []
    for ds in [dataset] if dataset else list(config["datasets"]):
        for method in dataset_methods(config, ds):
            mcfg = unl["methods"][method]
            for lr in mcfg.get("lrs") or unl.get("lrs") or [UnlearnConfig.lr]:
                for alpha in mcfg["alphas"]:
                    jobs.append(UnlearnJob(ds, method, fmt_num(alpha), fmt_num(lr)))
    return jobs


def unlearn_slice(config: dict, job: UnlearnJob) -> dict:
    """The resolved UnlearnConfig of one job (only what this job depends on)."""
    unl = config["unlearn"]
    raw = {k: unl[k] for k in UNLEARN_SHARED_KEYS if k in unl}
    raw.update(method=job.method, alpha=float(job.alpha), lr=float(job.lr))
    where = f"unlearn.methods.{job.method}"
    resolved = to_dict(from_dict(UnlearnConfig, raw, where))
    if not is_saliency_method(job.method):  # SURE settings are not part of other methods' jobs
        resolved = {k: v for k, v in resolved.items() if not k.startswith("sure_")}
    for k, default in UNLEARN_MEMORY_DEFAULTS.items():
        if resolved.get(k) == default:
            del resolved[k]
    return resolved


def is_saliency_method(method: str) -> bool:
    """SURE methods are named <objective>_sure (tests/test_losses.py checks it against the registry)."""
    return method.endswith("_sure")


def model_ids(config: dict, dataset: str) -> list[str]:
    return list(BASES) + [j.model_id for j in unlearn_jobs(config, dataset)]


def stage_slice(config: dict, section: str, cls) -> dict:
    """A whole-section stage config with defaults resolved (model, train, evaluate, report)."""
    return to_dict(from_dict(cls, config.get(section), section))


# The evaluation settings that the memorisation check of train_base uses (and nothing else, so
# that e.g. changing the Min-K fraction reruns evaluations but not training).
TRAIN_CHECK_EVAL_KEYS = ("batch_size", "knowmem_max_new_tokens", "verbmem_max_new_tokens")


def train_check_eval_slice(config: dict) -> dict:
    full = stage_slice(config, "evaluate", EvalConfig)
    return {k: full[k] for k in TRAIN_CHECK_EVAL_KEYS}


def scheme_slice(config: dict, scheme: str) -> dict:
    return to_dict(from_dict(SchemeConfig, config["quantize"]["schemes"][scheme], f"quantize.schemes.{scheme}"))
