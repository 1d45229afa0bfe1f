"""Weight-change analysis: how far unlearning moved the weights, and how many quantized codes moved.

Per (unlearned model, its released target, scheme), over every Linear weight of the transformer
blocks (embeddings, norms and lm_head excluded, as the quantizers exclude them):

* ``cosine`` and ``rel_l2`` of the full-precision weights: cos(W_t, W_u) and
  ||W_u - W_t|| / ||W_t|| (the paper's rebuttal reports cosine 0.99 at 7B);
* ``frac_codes_changed``: the fraction of weights whose *stored code* differs between the
  quantized target and the quantized unlearned model: exact integer codes for RTN, the int8 / 4-bit
  indices for bitsandbytes, the GPTQ/AWQ integer codes saved by the quantize rule, the fp16/bf16
  value for casts and the fp32 value itself for ``none``;
* ``frac_dequant_changed``, ``q_cosine``, ``q_rel_l2``: the same on the deployed (dequantized)
  weights, where a changed scale also counts.

Each is given overall and per module type (q_proj, ..., down_proj) and per layer.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path

import torch

from . import runtime
from .plugins import Scheme

_LAYER = re.compile(r"layers\.(\d+)\.")


def linear_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The block Linear weights of a state dict: 2-D ``*.weight`` tensors except embeddings and lm_head."""
    return {
        k[: -len(".weight")]: v.float()
        for k, v in state.items()
        if k.endswith(".weight") and v.dim() == 2 and "embed" not in k and "lm_head" not in k
    }


def _load(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no model*.safetensors")
    out = {}
    for f in files:
        runtime.check_safetensors(f)
        out.update(load_file(str(f)))
    return out


class _Acc:
    def __init__(self):
        self.n = 0
        self.sums = defaultdict(float)

    def add(self, n: int, **sums: float) -> None:
        self.n += n
        for k, v in sums.items():
            self.sums[k] += v

    def result(self) -> dict:
        s = self.sums

        def cos(dot, a, b):
            return dot / math.sqrt(a * b) if a > 0 and b > 0 else math.nan

        return {
            "n_weights": self.n,
            "cosine": cos(s["dot"], s["tt"], s["uu"]),
            "rel_l2": math.sqrt(s["dd"] / s["tt"]) if s["tt"] > 0 else math.nan,
            "frac_fp_changed": s["fp_changed"] / self.n,
            "frac_codes_changed": s["codes_changed"] / self.n,
            "frac_dequant_changed": s["deq_changed"] / self.n,
            "q_cosine": cos(s["qdot"], s["qtt"], s["quu"]),
            "q_rel_l2": math.sqrt(s["qdd"] / s["qtt"]) if s["qtt"] > 0 else math.nan,
        }


def _sums(wt, wu, ct, cu, qt, qu) -> dict[str, float]:
    d, qd = wu - wt, (qu - qt)
    return {
        "dot": float((wt * wu).sum()),
        "tt": float((wt * wt).sum()),
        "uu": float((wu * wu).sum()),
        "dd": float((d * d).sum()),
        "fp_changed": float((wt != wu).sum()),
        "codes_changed": float((ct != cu).sum()) * wt.numel() / ct.numel(),
        "deq_changed": float((qt != qu).sum()),
        "qdot": float((qt * qu).sum()),
        "qtt": float((qt * qt).sum()),
        "quu": float((qu * qu).sum()),
        "qdd": float((qd * qd).sum()),
    }


def summarise(pairs: dict[str, tuple]) -> dict:
    """``pairs``: name -> (W_t, W_u, codes_t, codes_u, deq_t, deq_u); overall / per module / per layer."""
    overall, by_module, by_layer, per_linear = _Acc(), defaultdict(_Acc), defaultdict(_Acc), {}
    for name, (wt, wu, ct, cu, qt, qu) in sorted(pairs.items()):
        if ct.shape != cu.shape:
            raise ValueError(f"{name}: code shapes differ ({tuple(ct.shape)} vs {tuple(cu.shape)})")
        sums = _sums(wt.float(), wu.float(), ct, cu, qt.float(), qu.float())
        n = wt.numel()
        overall.add(n, **sums)
        by_module[name.split(".")[-1]].add(n, **sums)
        m = _LAYER.search(name + ".")
        by_layer[m.group(1) if m else "other"].add(n, **sums)
        one = _Acc()
        one.add(n, **sums)
        per_linear[name] = one.result()
    return {
        "overall": overall.result(),
        "by_module": {k: v.result() for k, v in sorted(by_module.items())},
        "by_layer": {k: v.result() for k, v in sorted(by_layer.items(), key=lambda kv: kv[0])},
        "per_linear": per_linear,
    }


def deployed_and_codes(weights: dict[str, torch.Tensor], scheme: Scheme):
    """For on-the-fly schemes: (codes, dequantized) per Linear, from the quantizer itself."""
    from .quantize import implementation

    quantizer = implementation(scheme)
    holder = torch.nn.Module()
    mods = {}
    for name, w in weights.items():
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data = w.clone()
        key = name.replace(".", "__")
        holder.add_module(key, lin)
        mods[name] = key
    quantizer.apply(holder, scheme)
    codes = {name: quantizer.codes(w, scheme)["codes"] for name, w in weights.items()}
    deq = {name: getattr(holder, key).weight.detach().float() for name, key in mods.items()}
    return codes, deq


def saved_codes(quant_dir: str | Path) -> tuple[dict, dict]:
    """Codes and deployed weights of a quantize-rule checkpoint (GPTQ/AWQ)."""
    from safetensors.torch import load_file

    runtime.check_safetensors(Path(quant_dir) / "quant_codes.safetensors")
    raw = load_file(str(Path(quant_dir) / "quant_codes.safetensors"))
    codes = {k[: -len(".codes")]: v for k, v in raw.items() if k.endswith(".codes")}
    deq = linear_weights(_load(quant_dir))
    missing = sorted(set(deq) - set(codes))
    if missing:
        raise ValueError(f"{quant_dir}/quant_codes.safetensors: no codes for {missing[:3]}")
    return codes, deq


def weight_change(
    target_dir,
    unlearned_dir,
    scheme: Scheme,
    target_quant=None,
    unlearned_quant=None,
    weights: tuple[dict, dict] | None = None,
) -> dict:
    """One scheme's analysis; ``weights`` = preloaded (target, unlearned) Linear weights, if any."""
    if weights is None:
        weights = (linear_weights(_load(target_dir)), linear_weights(_load(unlearned_dir)))
    wt, wu = weights
    if set(wt) != set(wu):
        raise ValueError(f"{target_dir} and {unlearned_dir} have different Linear layers")
    if scheme.calibrated:
        if target_quant is None or unlearned_quant is None:
            raise ValueError(f"quantizer {scheme.quantizer!r}: the analysis needs both quantized checkpoints")
        ct, qt = saved_codes(target_quant)
        cu, qu = saved_codes(unlearned_quant)
        source = "quantize-rule checkpoints (llmcompressor codes)"
    else:
        ct, qt = deployed_and_codes(wt, scheme)
        cu, qu = deployed_and_codes(wu, scheme)
        source = "quantizer applied here"
    pairs = {n: (wt[n], wu[n], ct[n], cu[n], qt[n], qu[n]) for n in wt}
    return {"codes_source": source, **summarise(pairs)}


def load_pair(target_dir, unlearned_dir) -> tuple[dict, dict]:
    return linear_weights(_load(target_dir)), linear_weights(_load(unlearned_dir))
