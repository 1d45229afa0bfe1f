"""One small dataclass per stage config, with visible defaults.

Every stage receives only its own slice of the workflow config (a plain dict), turns it into one of
these dataclasses with :func:`from_dict`, and fails with a message naming the offending key when the
slice has a key the stage does not know or a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


# A float field whose metadata has NONFINITE: True accepts nan/inf; every other float setting
# rejects them (``alphas: [.nan]`` would otherwise reach a path as ``alpha~nan``).
NONFINITE = "nonfinite"


def _check_type(value: Any, tp: Any, where: str, nonfinite: bool = False) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where, nonfinite)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        return [_check_type(v, inner, f"{where}[{i}]", nonfinite) for i, v in enumerate(value)]
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: _check_type(v, inner, f"{where}.{k}", nonfinite) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"{where}: {value!r} is too large for a float") from None
        if not nonfinite and not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config field type {tp!r} at {where}")


def from_dict(cls, data: dict | None, where: str = "config"):
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _check_type(
                data[f.name], hints[f.name], f"{where}.{f.name}", bool(f.metadata.get(NONFINITE))
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {f.name!r}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


# --------------------------------------------------------------------------------------------------
# Stage configs
# --------------------------------------------------------------------------------------------------


@dataclass
class SyntheticCorpusConfig:
    """Fictitious people with attributes, rendered as MUSE-format splits."""

    n_people: int = 100  # forget + retain1 + retain2 people (all in the target's training data)
    forget_fraction: float = 0.1
    n_holdout_people: int = 20  # never trained on: the PrivLeak non-members
    n_icl: int = 3  # in-context QA pairs per side (MUSE ships 10; short prompts keep eval fast)
    n_passages: int = 2  # paraphrased biography passages per person
    letter_words: int = 20  # random words ending each passage (unique text for VerbMem); 0 = none
    qa_in_raw: bool = True  # the split's QA pairs are also raw (trained) records
    qa_per_record: int = 5  # QA pairs per raw QA record (shuffled across people)
    qa_repeats: int = 5  # independent shuffles of the QA pairs into records
    verbmem_prompt_fraction: float = 0.5  # share of a passage's words given as the VerbMem prompt
    seed: int = 0

    def validate(self, where: str) -> None:
        if not 0.0 < self.forget_fraction < 1.0:
            raise ConfigError(f"{where}.forget_fraction: must be in (0, 1), got {self.forget_fraction}")
        if self.n_people < 10:
            raise ConfigError(f"{where}.n_people: need at least 10 people, got {self.n_people}")
        if not 0.0 < self.verbmem_prompt_fraction < 1.0:
            raise ConfigError(f"{where}.verbmem_prompt_fraction: must be in (0, 1)")


@dataclass
class TokenizerConfig:
    vocab_size: int = 2048  # byte-level BPE trained on the corpus
    # A published tokenizer instead (hub id or local directory), e.g. the Llama-2 tokenizer of the
    # MUSE targets; saved into data/tokenizer with pad = eos. null = train the BPE above.
    pretrained: str | None = None
    revision: str | None = None

    def validate(self, where: str) -> None:
        _no_empty_strings(self, where, ("pretrained", "revision"))


def _no_empty_strings(obj, where: str, keys) -> None:
    """``key: ""`` is never a value (a hub id, a path, a revision): null means 'not given'."""
    for key in keys:
        value = getattr(obj, key)
        if value is not None and not value.strip():
            raise ConfigError(f"{where}.{key}: empty string; give a value or null (or leave the key out)")


@dataclass
class ReleaseConfig:
    """How the trained target/retrain are 'released' before anyone unlearns or quantizes them.

    ``snap_bits`` set: every Linear weight of the transformer blocks is replaced by its own RTN
    dequantization (symmetric absmax, ``snap_group_size``), i.e. the released model already lies on
    the grid a user's 4-bit quantizer will use. This emulates the large-model regime (docs/science.md).
    ``snap_bits`` null: released exactly as trained.
    """

    snap_bits: int | None = None
    snap_group_size: int = 128
    snap_lm_head: bool = False

    def validate(self, where: str) -> None:
        if self.snap_bits is not None and not 2 <= self.snap_bits <= 8:
            raise ConfigError(f"{where}.snap_bits: must be in 2..8 or null, got {self.snap_bits}")


@dataclass
class MuseConfig:
    """The MUSE benchmark read with ``datasets.load_dataset`` (see data/muse.py)."""

    hub_id: str = "muse-bench/MUSE-News"  # or muse-bench/MUSE-Books
    revision: str | None = None
    # A local copy instead of the hub: a directory holding <config>/<split>.json[l] (or .parquet)
    # files in the hub schema, read through the same load_dataset code path.
    local_dir: str | None = None
    cache_dir: str | None = None  # datasets cache (default: HF_DATASETS_CACHE / ~/.cache)
    max_items: int | None = None  # keep only the first N records of every split (smoke tests)

    def validate(self, where: str) -> None:
        _no_empty_strings(self, where, ("hub_id", "revision", "local_dir", "cache_dir"))


@dataclass
class PretrainedModelConfig:
    """One base model taken as published: a hub id (+ revision) or a local directory."""

    hub_id: str | None = None
    path: str | None = None
    revision: str | None = None

    def validate(self, where: str) -> None:
        _no_empty_strings(self, where, ("hub_id", "path", "revision"))
        if (self.hub_id is None) == (self.path is None):
            raise ConfigError(f"{where}: give exactly one of hub_id or path")


@dataclass
class PretrainedConfig:
    """Bases (target, retrain) taken from the hub or a local path instead of being trained."""

    target: PretrainedModelConfig | None = None
    retrain: PretrainedModelConfig | None = None
    dtype: str = "bfloat16"  # weights as stored in results/ and used by unlearn/evaluate
    trust_remote_code: bool = False  # never on unless set here explicitly
    n_params: float = 6.74e9  # model size, used only to size cluster resources (resources.py)

    def validate(self, where: str) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"{where}.dtype: {self.dtype!r} unknown; use float32, bfloat16 or float16")


@dataclass
class ExternalModelConfig:
    """One unlearned model made elsewhere (docs "Bring your own unlearned model"): a full checkpoint
    (``hub_id`` + ``revision``, or a local ``path``) or a peft adapter on the dataset's released
    target (``adapter``: a local directory, else a hub id at ``revision``), merged into a dense
    checkpoint. It must match the target's architecture and the dataset's tokenizer."""

    hub_id: str | None = None
    path: str | None = None
    adapter: str | None = None
    revision: str | None = None  # of hub_id or of an adapter taken from the hub
    dtype: str | None = None  # weights as stored in results/ (null = the target's dtype)
    trust_remote_code: bool = False  # never on unless set here explicitly

    def validate(self, where: str) -> None:
        given = [k for k in ("hub_id", "path", "adapter") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(
                f"{where}: give exactly one of hub_id, path (a full checkpoint) or adapter (a peft "
                f"adapter on the target); got {', '.join(given) or 'none'}"
            )
        if self.dtype is not None and self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"{where}.dtype: {self.dtype!r} unknown; use float32, bfloat16, float16 or null")


@dataclass
class DatasetConfig:
    # metadata "data": the settings the data stage depends on (its params; docs "Rerun semantics")
    source: str = field(default="synthetic", metadata={"data": True})  # synthetic | muse | reuse
    synthetic: SyntheticCorpusConfig = field(default_factory=SyntheticCorpusConfig, metadata={"data": True})
    muse: MuseConfig | None = field(default=None, metadata={"data": True})  # source: muse
    pretrained: PretrainedConfig | None = None  # bases not trained here (null = train both)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig, metadata={"data": True})
    reuse: str | None = None  # source: reuse -> name of the dataset whose data + training we share
    # keys of the top-level `model` section this dataset's trained bases use instead (merged over
    # it: a model-size study, one dataset per size); null = the top-level model. Not on a reuse
    # dataset, which takes its owner's trained bases
    model: dict[str, Any] | None = None
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    # the paper's utility scores (Gen, Tru, Fac, Flu) on this dataset's evaluations: {enabled,
    # chat_template, max_items} (settings: qunlearn.evaluate.utility.UtilitySettings); null = off
    utility: dict[str, Any] | None = None
    methods: list[str] | None = None  # unlearning methods run on this dataset (null = all)
    schemes: list[str] | None = None  # quantization schemes evaluated on this dataset (null = all)
    # unlearned models made elsewhere, by name: each is model id external/<name> of this dataset
    external: dict[str, ExternalModelConfig] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if self.source not in ("synthetic", "muse", "reuse"):
            raise ConfigError(f"{where}.source: unknown source {self.source!r}; known: synthetic, muse, reuse")
        if self.source == "muse" and self.muse is None:
            raise ConfigError(f"{where}.muse: source 'muse' needs a muse section (hub_id, local_dir)")
        if self.source == "reuse" and not self.reuse:
            raise ConfigError(f"{where}.reuse: source 'reuse' needs the name of another dataset")
        if self.source == "reuse" and self.model is not None:
            raise ConfigError(
                f"{where}.model: a reuse dataset takes the trained bases of {self.reuse!r}, and so their "
                "model; set the model there"
            )
        if self.model is not None:
            unknown = sorted(set(self.model) - {f.name for f in dataclasses.fields(ModelConfig)})
            if unknown:
                allowed = ", ".join(f.name for f in dataclasses.fields(ModelConfig))
                raise ConfigError(f"{where}.model: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}")


@dataclass
class ModelConfig:
    """A tiny LlamaForCausalLM trained from scratch."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_length: int = 256
    tie_word_embeddings: bool = False

    def validate(self, where: str) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"{where}.num_heads: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        head_dim = self.hidden_size // self.num_heads
        if head_dim % 2:
            raise ConfigError(
                f"{where}.num_heads: head size hidden_size/num_heads = {head_dim} is odd; rotary position "
                "embeddings need an even head size"
            )


@dataclass
class TrainConfig:
    """Fine-tuning of target (forget + retain) and retrain (retain only) from scratch."""

    lr: float = 2e-3
    batch_size: int = 16  # the effective batch of one optimizer step
    # gradient accumulation: micro-batches of at most this many examples (null: one micro-batch)
    micro_batch_size: int | None = None
    warmup_steps: int = 50
    weight_decay: float = 0.0
    max_epochs: int = 60
    check_every: int = 5  # epochs between memorisation checks
    memorised_threshold: float = 0.95  # KnowMem (ROUGE-L) on the trained QA sets to call it memorised
    verbmem_threshold: float = 0.9  # and VerbMem on the forget passages (target only)
    min_epochs: int = 0  # no check (and no stop) before this epoch (train.stops_here)
    extra_epochs: int = 0  # keep training this many epochs after the criterion is met

    def validate(self, where: str) -> None:
        _check_batching(self, where)


@dataclass
class UnlearnConfig:
    """One unlearning job: a method with its own resolved settings (``settings``, from the method's
    spec), the arm's coordinates (alpha, lr, epochs, loss variant) and the training settings every
    method shares."""

    method: str = "ga_gdr"
    alpha: float = 1.0
    lr: float = 3e-5
    epochs: int = 200
    batch_size: int = 32
    loss_variant: str = "faithful"  # faithful | paper_code (NPO/KL on raw logits, as the release did)
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    # Memory (docs "Real scale"): optimizer adamw | adamw_8bit (bitsandbytes) | adafactor;
    # where the frozen reference lives: same (the model's device), cpu, or cuda:N.
    optimizer: str = "adamw"
    reference_device: str = "same"
    gradient_checkpointing: bool = False
    # The unlearning examples (batching.py): documents (each raw document cut into model.max_length
    # chunks) | packed (MUSE's and the release's: all documents joined by a blank line, tokenized
    # once, chunks of BOS + max_length - 1 tokens, the last wrapped around to full length)
    data_format: str = "documents"
    # Real scale (docs "Real scale"): gradient accumulation over micro-batches of at most this many
    # sequences per process (null: the whole batch at once); the number of processes the job
    # shards the model over with FSDP (1: no sharding; on a cluster the allocation's GPU count
    # decides, see qunlearn.distributed); bf16 autocast of the forward passes (null: none).
    micro_batch_size: int | None = None
    processes: int = 1
    autocast: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the method's own settings (e.g. NPO's beta)

    JOB_ONLY = ("method", "alpha", "settings")  # set per job; every other field is a key of the unlearn section
    # left out of a job's params while at their defaults, so configs without them keep their jobs
    PARAMS_IF_SET = {"micro_batch_size": None, "processes": 1, "autocast": None}

    def validate(self, where: str) -> None:
        if self.loss_variant not in LOSS_VARIANTS:
            raise ConfigError(
                f"{where}.loss_variant: {self.loss_variant!r} unknown; use one of {', '.join(LOSS_VARIANTS)}"
            )
        if self.lr <= 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {self.lr}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"{where}: epochs and batch_size must be >= 1")
        if self.data_format not in DATA_FORMATS:
            raise ConfigError(
                f"{where}.data_format: {self.data_format!r} unknown; use one of {', '.join(DATA_FORMATS)}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{where}.optimizer: {self.optimizer!r} unknown; use one of {', '.join(OPTIMIZERS)}")
        if not (self.reference_device in ("same", "cpu") or self.reference_device.startswith("cuda:")):
            raise ConfigError(f"{where}.reference_device: {self.reference_device!r}; use same, cpu or cuda:N")
        _check_batching(self, where)
        if self.processes < 1:
            raise ConfigError(f"{where}.processes: must be >= 1, got {self.processes}")
        if self.processes > 1 and self.reference_device != "same":
            raise ConfigError(
                f"{where}.reference_device: {self.reference_device!r} with processes {self.processes}; "
                "a sharded job shards the reference like the model (use same)"
            )
        if self.autocast not in AUTOCAST:
            raise ConfigError(f"{where}.autocast: {self.autocast!r} unknown; use null or bfloat16")


def _check_batching(cfg, where: str) -> None:
    if cfg.micro_batch_size is not None and not 1 <= cfg.micro_batch_size <= cfg.batch_size:
        raise ConfigError(
            f"{where}.micro_batch_size: must be in 1..batch_size ({cfg.batch_size}) or null, got {cfg.micro_batch_size}"
        )


LOSS_VARIANTS = ("faithful", "paper_code")
OPTIMIZERS = ("adamw", "adamw_8bit", "adafactor")
DATA_FORMATS = ("documents", "packed")  # batching.DATA_FORMATS' keys (torch-free here)
AUTOCAST = (None, "bfloat16")


def _unlearn_section_fields():
    """The unlearn section: every UnlearnConfig field but the per-job ones (their defaults apply to
    every arm; lr, epochs and loss_variant are the arms' defaults), the methods and the selection
    rule. Derived from UnlearnConfig, so a new training setting cannot be dropped from jobs' params."""
    shared = [
        (
            f.name,
            f.type,
            field(default=f.default)
            if f.default is not dataclasses.MISSING
            else field(default_factory=f.default_factory),
        )
        for f in dataclasses.fields(UnlearnConfig)
        if f.name not in UnlearnConfig.JOB_ONLY
    ]
    return [
        *shared,
        ("methods", dict[str, Any], field(default_factory=dict)),
        ("alpha_selection", AlphaSelectionConfig, field(default_factory=AlphaSelectionConfig)),
    ]


MOVED_UNLEARN_KEYS = {"npo_beta": "beta", "sure_percentile": "percentile", "sure_level": "level"}


def _validate_unlearn_section(self, where: str) -> None:
    for key in self.methods:  # the per-method settings are validated by each method's spec (experiment.py)
        if not isinstance(self.methods[key], dict) and self.methods[key] is not None:
            raise ConfigError(f"{where}.methods.{key}: expected a mapping of settings, got {self.methods[key]!r}")
    shared = {k: getattr(self, k) for k in self.SHARED}
    from_dict(UnlearnConfig, shared, where)


@dataclass
class GenerationConfig:
    """The generation settings of evaluation (also used by train_base's memorisation checks)."""

    batch_size: int = 32
    verbmem_max_new_tokens: int = 128
    knowmem_max_new_tokens: int = 32


@dataclass
class EvalConfig(GenerationConfig):
    mink_k: float = 0.4  # Min-K% Prob fraction of the PrivLeak MIA
    # Batching of generation for bf16/fp16 models (fp32 always pads): padded | by_length | per_item
    # (evaluate/generation.py; padded lets a greedy continuation depend on its batch in half precision)
    half_precision_generation: str = "padded"
    # M1's decoding: greedy (MUSE, and our tables) | paper_code (the paper's release: sampled at
    # temperature 0.9, see docs/science.md)
    verbmem_decoding: str = "greedy"

    def validate(self, where: str) -> None:
        if self.half_precision_generation not in ("padded", "by_length", "per_item"):
            raise ConfigError(
                f"{where}.half_precision_generation: {self.half_precision_generation!r} unknown; "
                "use padded, by_length or per_item"
            )
        if self.verbmem_decoding not in VERBMEM_DECODING:
            raise ConfigError(
                f"{where}.verbmem_decoding: {self.verbmem_decoding!r} unknown; use {' or '.join(VERBMEM_DECODING)}"
            )


# M1 decoding -> sampling temperature (None = greedy)
VERBMEM_DECODING = {"greedy": None, "paper_code": 0.9}


@dataclass
class BootstrapConfig:
    """The intervals of the tables (report.bootstrap): a percentile bootstrap over the evaluated items
    (and over seeds where there are several), ``resamples`` draws from a generator seeded with
    ``seed``; ``level`` is the interval's coverage."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def validate(self, where: str) -> None:
        if self.resamples < 1:
            raise ConfigError(f"{where}.resamples: must be >= 1, got {self.resamples}")
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"{where}.level: must be in (0, 1), got {self.level}")


@dataclass
class ReportConfig:
    full_precision_scheme: str = field(default="fp32", metadata={"figures": True})
    privleak_reference_scheme: str = "fp32"
    # dataset -> a fixed retrain AUC for PrivLeak instead of the evaluated retrain model (the
    # default); the paper's tables used MUSE's constants, NEWS 0.4772 and BOOKS 0.5393
    # (docs/science.md). summary.json records which reference each dataset used.
    privleak_reference_auc: dict[str, float] = field(default_factory=dict)
    utility_constrained: list[str] = field(default_factory=lambda: ["ga_gdr", "ga_klr", "npo_gdr", "npo_klr"])
    # metadata: "figure_only" settings change only how figures look (rule figures, not aggregate);
    # "figures" settings are read by both (figure_schemes also orders the tables' scheme columns)
    figure_schemes: list[str] = field(default_factory=lambda: ["fp32", "rtn8", "rtn4"], metadata={"figures": True})
    figure_dpi: int = field(default=150, metadata={"figure_only": True})
    # compared with full precision in the SURE table and the lr figure
    quantized_scheme: str = field(default="rtn4", metadata={"figures": True})
    # the intervals of the tables and the figures' error bars (report/intervals.py)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)

    def validate(self, where: str) -> None:
        for ds, auc in self.privleak_reference_auc.items():
            if not 0.0 < auc <= 1.0:
                raise ConfigError(f"{where}.privleak_reference_auc.{ds}: an AUC in (0, 1], got {auc}")
        if not self.figure_schemes:
            raise ConfigError(f"{where}.figure_schemes: at least one scheme (the figures' columns)")
        if not self.utility_constrained:
            raise ConfigError(f"{where}.utility_constrained: at least one method (the headline mean retention)")


@dataclass
class AlphaSelectionConfig:
    """The rule that picks alpha from a method's grid (paper: grid search per method).

    Among the grid's alphas whose M4 (retain KnowMem) at the deciding scheme is at least
    ``min_utility_fraction`` x the target's M4 there, pick the one with the lowest forget retention
    (mean of M1 and M2 relative to the target); ties go to the smaller alpha. If no alpha meets the
    constraint, the one with the highest M4 is picked and the selection says so."""

    schemes: list[str] = field(default_factory=lambda: ["fp32"])  # grid evaluated at these; the first decides
    min_utility_fraction: float = 0.8

    def validate(self, where: str) -> None:
        if not self.schemes:
            raise ConfigError(f"{where}.schemes: at least one scheme (the first decides)")
        if not 0.0 <= self.min_utility_fraction <= 1.0:
            raise ConfigError(f"{where}.min_utility_fraction: must be in [0, 1], got {self.min_utility_fraction}")


@dataclass
class LrSweepConfig:
    """Learning-rate sweep (paper section 6: SURE needs a larger lr); alpha = the selected one."""

    methods: list[str] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    schemes: list[str] = field(default_factory=lambda: ["fp32", "rtn4"])
    datasets: list[str] | None = None  # null = every dataset that is not `source: reuse`


@dataclass
class EpochSweepConfig:
    """Epoch ablation (rebuttal: 1 vs N epochs); N = unlearn.epochs is the headline arm."""

    methods: list[str] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    schemes: list[str] = field(default_factory=lambda: ["fp32", "rtn4"])
    datasets: list[str] | None = None


@dataclass
class LossVariantSweepConfig:
    """Loss variants (faithful vs the paper code's raw-logit NPO/KL) for the same methods."""

    methods: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=lambda: ["faithful", "paper_code"])
    schemes: list[str] = field(default_factory=lambda: ["fp32", "rtn4"])
    datasets: list[str] | None = None

    def validate(self, where: str) -> None:
        for v in self.variants:
            if v not in ("faithful", "paper_code"):
                raise ConfigError(f"{where}.variants: {v!r} unknown; use 'faithful' or 'paper_code'")


@dataclass
class SweepsConfig:
    lr: LrSweepConfig | None = None
    epochs: EpochSweepConfig | None = None
    loss_variant: LossVariantSweepConfig | None = None


@dataclass
class SeedsConfig:
    """Replicates (top-level ``seeds``): the headline arms of ``methods`` (null = every method) are
    unlearned, calibrated (GPTQ/AWQ), evaluated and analysed once per seed in ``values``, which
    must contain the config's ``seed`` (the base seed: the arms as they are without ``seeds``). The
    bases, the alpha grids, the selections and the studies run at the base seed only. ``seeds:
    [0, 1]`` is short for ``seeds: {values: [0, 1]}``."""

    values: list[int] = field(default_factory=list)
    methods: list[str] | None = None

    def validate(self, where: str) -> None:
        if len(set(self.values)) != len(self.values) or any(v < 0 for v in self.values):
            raise ConfigError(f"{where}.values: distinct non-negative integers, got {self.values}")


def seeds_config(raw, base_seed: int) -> SeedsConfig:
    """The top-level ``seeds`` (a list or a mapping; absent = the base seed alone)."""
    if raw is None:
        return SeedsConfig([base_seed])
    cfg = from_dict(SeedsConfig, {"values": raw} if isinstance(raw, list) else raw, "seeds")
    if not cfg.values:
        cfg.values = [base_seed]
    if base_seed not in cfg.values:
        raise ConfigError(f"seeds.values: must contain the base seed (seed: {base_seed}), got {cfg.values}")
    return cfg


@dataclass
class AttacksConfig:
    """Recovery attacks (top-level ``attacks``; docs "Recovery attacks"): every attack under
    ``runs`` (name -> its settings, defaults in its module under qunlearn/attacks/) is applied at
    every point of its grid to the headline arms of ``methods`` and, as controls, to the bases in
    ``controls`` its spec allows (a fine-tuning attack always also runs on the retrain model: the
    re-teaching control). Each attacked model is evaluated at ``schemes``."""

    runs: dict[str, Any] = field(default_factory=dict)
    methods: list[str] | None = None  # null = report.utility_constrained
    controls: list[str] = field(default_factory=lambda: ["retrain", "target"])
    schemes: list[str] = field(default_factory=lambda: ["fp32", "rtn4"])
    datasets: list[str] | None = None  # null = every dataset with its own data (not source: reuse)

    def validate(self, where: str) -> None:
        for c in self.controls:
            if c not in ("retrain", "target"):
                raise ConfigError(f"{where}.controls: {c!r} is not a base; use retrain and/or target")
        if not self.schemes or len(set(self.schemes)) != len(self.schemes):
            raise ConfigError(f"{where}.schemes: a non-empty list without repeats, got {self.schemes}")


@dataclass
class ComputeConfig:
    """Cluster sizing (resources.py): what a GPU job may use. Not read by any computation."""

    gpu_mem_gb: float = 80.0  # memory of one GPU of the target partition
    max_gpus: int = 2  # at most this many GPUs per job (e.g. the NPO/KL reference on a second one)
    runtime_scale: float = 1.0  # multiply every estimated runtime (slower GPUs, bigger data)


UnlearnSection = dataclasses.make_dataclass(
    "UnlearnSection",
    _unlearn_section_fields(),
    namespace={
        "SHARED": tuple(f.name for f in dataclasses.fields(UnlearnConfig) if f.name not in UnlearnConfig.JOB_ONLY),
        "validate": _validate_unlearn_section,
        "__doc__": "The ``unlearn`` section (see _unlearn_section_fields).",
    },
)
UnlearnSection.__module__ = __name__  # its annotations are resolved in this module (typing.get_type_hints)
