"""Process-level set-up shared by every stage: seeds, threads, atomic outputs, meta.json."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

TRACKED_PACKAGES = (
    "qunlearn",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "datasets",
    "numpy",
    "rouge-score",
    "pandas",
    "matplotlib",
    "snakemake",
)


def seed_everything(seed: int, threads: int | None = None) -> None:
    from . import determinism

    determinism.pin_cpu_kernels()  # before torch's first kernel, where the caller has not run one yet
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    # Deterministic kernels: the same config gives the same metrics on the same machine.
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    determinism.check_pinned()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
    except Exception:
        return None


def hash_path(path: str | Path) -> str:
    """sha256 of a file, or of a directory's files (sorted relative names + contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_meta(
    stage: str, config: dict, seed: int | None, inputs: dict[str, str | Path], started: float, extra: dict | None = None
) -> dict:
    return {
        "stage": stage,
        "config": config,
        "seed": seed,
        "inputs": {k: {"path": str(v), "sha256": hash_path(v)} for k, v in inputs.items()},
        "git_commit": git_commit(),
        "versions": package_versions(),
        "host": {"platform": platform.platform(), "argv": sys.argv[:3]},
        "wall_time_s": round(time.time() - started, 3),
        **(extra or {}),
    }


@contextlib.contextmanager
def atomic_file(final: str | Path):
    """Yield a temporary sibling of ``final`` (same suffix, so writers that infer the format from it,
    like matplotlib, still do); it replaces ``final`` only if the block succeeds, so a killed job
    never leaves a half-written output."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | Path):
    """Yield a temporary sibling directory; rename it to ``final`` only if the block succeeds.

    A crashed or killed job thus never leaves a half-written ``final`` that a rerun could mistake
    for a complete output.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def read_json(path: str | Path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (outputs are never modified in place), copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
