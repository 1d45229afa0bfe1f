"""The unlearning loop: AdamW at a constant lr over epochs of D_f, retain batches cycled alongside.

It knows no method: the spec's traits say whether to build the frozen reference and to read D_r,
the implementation's hooks (base.py) do the rest.

Gradient accumulation and sharding: an effective batch (``batch_size`` forget and retain examples)
is split into k micro-batches of at most ``micro_batch_size`` examples, k a multiple of the number
of processes; process r runs micro-batches r, r + P, ... Each micro-batch's terms are weighed by
their share of the effective batch (``method.term_sizes``), so the gradients sum to the effective
batch's; FSDP averages over the P processes, hence the extra factor P. With one micro-batch in one
process the step is exactly the single-batch step of before.

A ``gradient_free`` method (spec trait) skips all of that: its ``edit`` hook changes the weights
from the batches of D_f (and D_r) in one process, and the history keeps its shape (``_edit``).
A method's ``lr_schedule`` (None for every unlearning method: constant lr, no scheduler) lets a
preparatory fine-tune (the task vector's) run through the same loop with a cosine schedule.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch

from .. import distributed
from ..batching import collate, encode, epoch_batches, to_device
from ..config import UnlearnConfig
from ..memory import enable_gradient_checkpointing, frozen_reference, make_optimizer
from .base import UnlearningMethod

log = logging.getLogger(__name__)


class Cycle:
    """Endless shuffled batches over the retain examples (reshuffled each pass, seeded)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.bs, self.gen, self.queue = n, batch_size, generator, []

    def next(self) -> list[int]:
        if not self.queue:
            self.queue = epoch_batches(self.n, self.bs, self.gen)
        return self.queue.pop(0)


def build_method(cfg: UnlearnConfig):
    """The job's method: its spec from the registry, its settings rebuilt (and validated) from
    ``cfg.settings``."""
    from ..registries import METHODS  # imports every plugin module (fills the registry)

    spec = METHODS.get(cfg.method, "unlearn.method")
    settings = spec.resolve(cfg.settings, f"unlearn.methods.{cfg.method}")
    return spec.load()(spec=spec, alpha=cfg.alpha, settings=settings, loss_variant=cfg.loss_variant)


def split(idx: list[int], k: int) -> list[list[int]]:
    """``idx`` in ``k`` contiguous chunks whose sizes differ by at most one (some empty if k > len)."""
    q, r = divmod(len(idx), k)
    out, start = [], 0
    for i in range(k):
        n = q + (1 if i < r else 0)
        out.append(idx[start : start + n])
        start += n
    return out


def micro_batches(forget_idx: list[int], retain_idx: list[int] | None, micro: int | None, world: int = 1):
    """[(forget chunk, retain chunk)] of one effective batch: k chunks of each side, k = the fewest
    that keep chunks at most ``micro`` long (null: one per process), rounded up to a multiple of
    ``world``. A side shorter than k has empty chunks (the loop gives them weight 0)."""
    longest = max(len(forget_idx), len(retain_idx or ()))
    per_process = micro if micro is not None else math.ceil(longest / world)
    k = world * math.ceil(math.ceil(longest / per_process) / world)
    retains = split(retain_idx, k) if retain_idx is not None else [None] * k
    return list(zip(split(forget_idx, k), retains))


def autocast_context(cfg: UnlearnConfig, device: torch.device):
    """bf16 autocast of the forward passes when ``unlearn.autocast: bfloat16`` (CPU and GPU)."""
    if cfg.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, cfg.autocast))


def unlearn(
    model,
    tokenizer,
    forget_texts: list[str],
    retain_texts: list[str],
    cfg: UnlearnConfig,
    seed: int,
    max_length: int,
    progress: bool = True,
    prepared: str | None = None,
    method=None,
    extra_texts: dict[str, list[str]] | None = None,
) -> dict:
    """Unlearn ``forget_texts`` from ``model`` in place; returns the loss history. ``prepared``:
    the method's preparatory model (spec trait ``preparation``); ``method``: an already built
    method to run instead of ``cfg.method``'s (a preparation's trainer); ``extra_texts``: the
    texts of the splits the spec ``reads_splits`` ({split: texts}), cycled like D_r and given to
    ``losses`` as ``extra={split: batch}`` (and to ``term_sizes``; micro-batches split them too)."""
    from tqdm.auto import tqdm

    method = method if method is not None else build_method(cfg)
    spec = method.spec
    if spec.gradient_free:
        return _edit(method, model, tokenizer, forget_texts, retain_texts, cfg, max_length, prepared)
    rank, world = distributed.rank_world()
    device = next(model.parameters()).device
    reference = frozen_reference(model, cfg.reference_device) if spec.reference_outputs else None
    if world > 1:  # the reference sharded as the model (its copy is made before the model is)
        distributed.shard(model)
        if reference is not None:
            distributed.shard(reference)
    method.setup(model, reference, tokenizer)
    forget = encode(tokenizer, forget_texts, max_length, cfg.data_format)
    retain = encode(tokenizer, retain_texts, max_length, cfg.data_format) if spec.needs_retain else []
    if type(method).setup_from_data is not UnlearningMethod.setup_from_data:  # only who needs the batches
        method.setup_from_data(
            model,
            _batches(forget, tokenizer.pad_token_id, cfg.batch_size, device),
            _batches(retain, tokenizer.pad_token_id, cfg.batch_size, device),
        )
    params = method.trainable_parameters(model)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    gen = torch.Generator().manual_seed(seed)
    retain_cycle = Cycle(len(retain), cfg.batch_size, gen) if retain else None
    extra = {}
    for split_name in spec.reads_splits:
        texts = (extra_texts or {}).get(split_name)
        if not texts:
            raise ValueError(f"unlearn: {spec.name} reads split {split_name!r}; no texts of it were given")
        extra[split_name] = encode(tokenizer, texts, max_length, cfg.data_format)
    extra_cycles = {k: Cycle(len(v), cfg.batch_size, gen) for k, v in extra.items()}
    opt = make_optimizer(params.values(), cfg.optimizer, cfg.lr, cfg.weight_decay)
    schedule = method.lr_schedule(cfg.epochs * math.ceil(len(forget) / cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule is not None else None
    history = {"epochs": [], "steps": 0, "n_forget_chunks": len(forget), "n_retain_chunks": len(retain)}
    for k, v in extra.items():
        history[f"n_{k}_chunks"] = len(v)
    if cfg.micro_batch_size is not None or world > 1:
        history["micro_batches_per_step"], history["processes"] = None, world
    pad = tokenizer.pad_token_id
    model.train()
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"unlearn {cfg.method}", unit="epoch", disable=not progress or rank)
    for epoch in bar:
        sums = dict.fromkeys(("forget", "retain", "loss"), 0.0)
        batches = epoch_batches(len(forget), cfg.batch_size, gen)
        for idx in batches:
            ridx = retain_cycle.next() if retain_cycle is not None else None
            opt.zero_grad(set_to_none=True)
            eidx = {k: c.next() for k, c in extra_cycles.items()}
            plan = micro_batches(idx, ridx, cfg.micro_batch_size, world)
            if len(plan) == 1:  # the whole batch at once, as before accumulation existed
                fb = to_device(collate([forget[i] for i in idx], pad), device)
                rb = to_device(collate([retain[i] for i in ridx], pad), device) if ridx is not None else None
                kwargs = {}
                if extra:
                    kwargs["extra"] = {
                        k: to_device(collate([extra[k][i] for i in v], pad), device) for k, v in eidx.items()
                    }
                with autocast_context(cfg, device):
                    losses = method.losses(model, reference, fb, rb, **kwargs)
                method.backward(losses, params)
                values = {k: v.item() for k, v in losses.items()}
            else:
                extra_plan = [dict(zip(eidx, chunks)) for chunks in zip(*(split(v, len(plan)) for v in eidx.values()))]
                values = _accumulate(
                    method, model, reference, params, plan, forget, retain, pad, device, cfg, extra, extra_plan
                )
                history["micro_batches_per_step"] = max(len(plan), history["micro_batches_per_step"] or 0)
            history.update(method.transform_gradients(params))
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params.values(), cfg.max_grad_norm)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            history["steps"] += 1
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
        row = {k: v / len(batches) for k, v in sums.items()}
        history["epochs"].append({"epoch": epoch, **row})
        bar.set_postfix(forget=f"{row['forget']:.3f}", retain=f"{row['retain']:.3f}")
        if not all(torch.isfinite(torch.tensor(v)) for v in row.values()):
            raise FloatingPointError(f"unlearning diverged at epoch {epoch}: {row}")
    history["local_state_mb"] = _local_state_mb(params, opt)
    history.update(method.finish(model))
    model.eval()
    return history


def _batches(examples, pad, bs, device) -> list[dict]:
    """The collated batches of ``examples`` in order (no shuffling)."""
    return [to_device(collate(examples[i : i + bs], pad), device) for i in range(0, len(examples), bs)]


def _edit(method, model, tokenizer, forget_texts, retain_texts, cfg, max_length, prepared) -> dict:
    """A gradient-free method's unlearning: ``method.edit`` on the batches of D_f (and D_r), in
    order (no shuffling: nothing is sampled), under no_grad; the history has the loop's keys."""
    spec = method.spec
    if distributed.rank_world()[1] > 1:
        raise ValueError(f"unlearn: {spec.name} is gradient-free; it runs in one process")
    if spec.preparation and prepared is None:
        raise ValueError(f"unlearn: {spec.name} needs its prepared model ({spec.preparation})")
    device = next(model.parameters()).device
    method.setup(model, None, tokenizer)
    forget = encode(tokenizer, forget_texts, max_length, cfg.data_format)
    retain = encode(tokenizer, retain_texts, max_length, cfg.data_format) if spec.needs_retain else []
    pad, bs = tokenizer.pad_token_id, cfg.batch_size

    def batches(examples):
        return [to_device(collate(examples[i : i + bs], pad), device) for i in range(0, len(examples), bs)]

    model.eval()
    with torch.no_grad(), autocast_context(cfg, device):
        rows, stats = method.edit(model, batches(forget), batches(retain), prepared)
    history = {
        "epochs": [{"epoch": i, "forget": 0.0, "retain": 0.0, "loss": 0.0, **row} for i, row in enumerate(rows, 1)],
        "steps": len(rows),
        "n_forget_chunks": len(forget),
        "n_retain_chunks": len(retain),
        **stats,
    }
    for row in history["epochs"]:
        if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise FloatingPointError(f"unlearning diverged at edit step {row['epoch']}: {row}")
    history["local_state_mb"] = _local_state_mb(dict(model.named_parameters()), None)
    return history


def _local_state_mb(params, opt) -> dict[str, float]:
    """MB this process holds of the trainable weights, their gradients and the optimizer state
    (its shards when sharded): the sharded share of the memory plan, measured."""

    def mb(tensors):
        return round(sum(distributed.local(t).numel() * t.element_size() for t in tensors) / 2**20, 3)

    states = (
        []
        if opt is None
        else [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    )
    return {
        "weights": mb(params.values()),
        "gradients": mb(p.grad for p in params.values() if p.grad is not None),
        "optimizer": mb(states),
    }


def _accumulate(
    method, model, reference, params, plan, forget, retain, pad, device, cfg, extra=None, extra_plan=None
) -> dict[str, float]:
    """Forward and backward every micro-batch of this process, each weighed by its share of the
    effective batch; returns the effective batch's terms (summed over processes). ``extra`` /
    ``extra_plan``: the encoded splits the spec ``reads_splits`` and their chunk of each micro-batch
    (a term named after the split is weighed by its own sizes)."""
    rank, world = distributed.rank_world()
    extra = extra or {}
    batches, extra_batches = [], []
    for n, (fidx, ridx) in enumerate(plan):
        fb = collate([forget[i] for i in fidx], pad) if fidx else None
        rb = collate([retain[i] for i in ridx], pad) if ridx else None
        batches.append((fb, rb))
        chunks = extra_plan[n] if extra_plan else {}
        extra_batches.append({k: collate([extra[k][i] for i in v], pad) if v else None for k, v in chunks.items()})
    # a side with fewer examples than micro-batches: an empty chunk runs a stand-in batch at weight 0
    stand_in = [next(b[s] for b in batches if b[s] is not None) if any(b[s] for b in batches) else None for s in (0, 1)]
    extra_stand_in = {k: next(e[k] for e in extra_batches if e[k] is not None) for k in extra}

    def filled(eb):
        return {k: v if v is not None else extra_stand_in[k] for k, v in eb.items()}

    sizes = []
    for (fb, rb), eb in zip(batches, extra_batches):
        kwargs = {"extra": filled(eb)} if extra else {}
        size = method.term_sizes(fb or stand_in[0], rb or stand_in[1] if plan[0][1] is not None else None, **kwargs)
        if fb is None:
            size["forget"] = 0
        if rb is None and "retain" in size:
            size["retain"] = 0
        for k, v in eb.items():
            if v is None and k in size:
                size[k] = 0
        sizes.append(size)
    totals = {k: sum(s[k] for s in sizes) for k in sizes[0]}
    values: dict[str, float] = {}
    for i in range(rank, len(plan), world):
        fb, rb = batches[i]
        fb = to_device(fb or stand_in[0], device)
        rb = to_device(rb or stand_in[1], device) if plan[0][1] is not None else None
        shares = {k: sizes[i][k] / max(1, totals[k]) * world for k in totals}
        kwargs = {"extra": {k: to_device(v, device) for k, v in filled(extra_batches[i]).items()}} if extra else {}
        with autocast_context(cfg, device):
            terms = method.weigh(method.losses(model, reference, fb, rb, **kwargs), shares)
        method.backward(terms, params)
        for k, v in terms.items():
            values[k] = values.get(k, 0.0) + v.item() / world
    keys = sorted(values)
    summed = distributed.all_reduce_sum(torch.tensor([values[k] for k in keys], dtype=torch.float64))
    return dict(zip(keys, summed.tolist()))
