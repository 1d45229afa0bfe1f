"""Deployment modes of a model with an adapter: the derived model id
``derived/deploy/mode~<mode>/of/<parent>`` (:func:`deploy_id`), made by rule ``deploy`` from the
parent's model directory and evaluated like any model.

A method whose spec declares ``deployments`` (e.g. ``ihl_fila``) writes, beside its merged weights
(what every other stage reads: the parent itself is the *merged then quantized* deployment), the
adapter (``adapter.safetensors``: ``<module>.lora_A`` (r x in), ``<module>.lora_B`` (out x r),
metadata ``scaling``) and the adjusted base weights (``adapter_base.safetensors``:
``<module>.weight``), merged = base + scaling * B A.

Mode ``adapter_on_quantized``: the quantized base with the unquantized adapter on top. Its model
directory holds the parent's checkpoint with the adapted modules' weights replaced by the base
(``model.safetensors``: a plain checkpoint, so every quantizer quantizes it as it quantizes any
model, bitsandbytes and GPTQ/AWQ included), the adapter, and the marker ``deployment.json``.
:func:`attach`, called by evaluate on any model directory with the marker, adds the adapter's
full-precision output ``scaling * B A x`` to each adapted module's output (a forward hook: it works
on a Linear with RTN weights and on a bitsandbytes module alike). So under a scheme Q the model
computes ``Q(W_base) x + s B A x``, where the merged deployment computes ``Q(W_base + s B A) x``;
at full precision the two are the same model (tests/test_lora_fila.py). A calibrated scheme's
quantize job calibrates the base alone (without the adapter's contribution) and copies the marker
and the adapter into its checkpoint.

Torch-free at import (the planner imports it).
"""

from __future__ import annotations

import json
from pathlib import Path

TRANSFORM = "deploy"
MODES = ("adapter_on_quantized",)
# how the tables name a mode's rows beside the arm's (the zoo table: "ihl_fila (quantized base + fp adapter)")
MODE_LABELS = {"adapter_on_quantized": "quantized base + fp adapter"}
# the model-id pattern of rule deploy's output (paths' derived grammar, one key: mode)
PATTERN = f"derived/{TRANSFORM}/mode~{{mode}}/of/{{parent}}"
MARKER = "deployment.json"
ADAPTER_FILE = "adapter.safetensors"
BASE_FILE = "adapter_base.safetensors"


def deploy_id(parent: str, mode: str) -> str:
    from .paths import derived_id

    if mode not in MODES:
        raise ValueError(f"deployment mode {mode!r}: known {', '.join(MODES)}")
    return derived_id(parent, TRANSFORM, {"mode": mode})


def parse(model_id: str) -> tuple[str, str] | None:
    """(mode, parent id) of a deployment's model id (:func:`deploy_id`), read through the path
    grammar; None for any other id (an arm, a base, an attacked model)."""
    from .paths import parse_model_id

    p = parse_model_id(model_id)
    if p.kind != "derived" or p.transform != TRANSFORM:
        return None
    return dict(p.settings)["mode"], p.parent


def marker(model_dir: str | Path) -> dict | None:
    """The deployment marker of a model directory (None: an ordinary checkpoint)."""
    f = Path(model_dir) / MARKER
    return json.loads(f.read_text()) if f.exists() else None


def write_deployment(parent_dir: str | Path, out_dir: str | Path, mode: str, seed: int | None = None) -> dict:
    """The model directory of ``mode`` applied to the parent (see the module docstring)."""
    import time

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from . import runtime

    started = time.time()
    parent = Path(parent_dir)
    if mode not in MODES:
        raise ValueError(f"deployment mode {mode!r}: known {', '.join(MODES)}")
    missing = [f for f in (ADAPTER_FILE, BASE_FILE) if not (parent / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"{parent}: no {', '.join(missing)}; only a method whose spec declares deployments writes them"
        )
    base = load_file(str(parent / BASE_FILE))
    replaced = 0
    with runtime.atomic_dir(out_dir) as tmp:
        for f in sorted(parent.iterdir()):
            if f.name in ("meta.json", BASE_FILE, MARKER) or f.is_dir():
                continue
            if f.suffix == ".safetensors" and f.name != ADAPTER_FILE:
                with safe_open(str(f), "pt") as fh:
                    meta = fh.metadata() or {"format": "pt"}
                tensors = load_file(str(f))
                for k in tensors:
                    if k in base:
                        tensors[k] = base[k].to(tensors[k].dtype)
                        replaced += 1
                save_file(tensors, str(tmp / f.name), metadata=meta)
            else:
                runtime.link_or_copy(f, tmp / f.name)
        if replaced != len(base):
            raise ValueError(f"{parent}: {len(base)} base weights, {replaced} found in the checkpoint")
        runtime.write_json_atomic(tmp / MARKER, {"mode": mode, "adapter": ADAPTER_FILE})
        meta = runtime.build_meta(
            "deploy", {"mode": mode}, seed, {"parent": parent_dir}, started, {"base_weights": replaced}
        )
        runtime.write_json_atomic(tmp / "meta.json", meta)
    return meta


def copy_marker(model_dir: str | Path, out_dir: str | Path) -> None:
    """Carry a deployment's marker and adapter into another checkpoint of it (a quantize job's)."""
    from . import runtime

    if marker(model_dir) is not None:
        for name in (MARKER, ADAPTER_FILE):
            runtime.link_or_copy(Path(model_dir) / name, Path(out_dir) / name)


def load_adapter(model_dir: str | Path) -> tuple[dict, float]:
    """{module: (A, B)} and the scaling of an adapter file."""
    from safetensors import safe_open

    out: dict = {}
    with safe_open(str(Path(model_dir) / ADAPTER_FILE), "pt") as fh:
        scaling = float(fh.metadata()["scaling"])
        for k in fh.keys():
            module, _, part = k.rpartition(".")
            out.setdefault(module, {})[part] = fh.get_tensor(k)
    return {m: (d["lora_A"], d["lora_B"]) for m, d in out.items()}, scaling


def attach(model, model_dir: str | Path) -> dict:
    """Add the full-precision adapter of a deployment directory on top of ``model``'s (quantized)
    modules; returns what the eval JSON records."""
    info = marker(model_dir)
    if info is None:
        raise ValueError(f"{model_dir}: no {MARKER}")
    if info["mode"] != "adapter_on_quantized":
        raise ValueError(f"{model_dir}/{MARKER}: unknown deployment mode {info['mode']!r}")
    adapter, scaling = load_adapter(model_dir)
    for name, (a, b) in adapter.items():
        module = model.get_submodule(name)
        device = next(module.parameters()).device
        module.register_forward_hook(_adapter_hook(a.to(device), b.to(device), scaling))
    return {"mode": info["mode"], "adapter_modules": len(adapter), "scaling": scaling}


def _adapter_hook(a, b, scaling: float):
    def hook(module, inputs, output):
        x = inputs[0]
        return output + ((x.to(a.dtype) @ a.T) @ b.T * scaling).to(output.dtype)

    return hook
