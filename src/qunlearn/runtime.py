"""Process-level set-up shared by every stage: seeds, threads, atomic outputs, meta.json."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import random
import re
import shutil
import socket
import stat
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
    "peft",
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


class InputFileError(ValueError):
    """An input file is missing, empty, truncated, not UTF-8 or not what its reader expects; the
    message names the file and what was expected, so one broken file among hundreds is found."""


# Files that record how an output was made (wall time, host, argv), not what it holds: left out of
# content hashes, so identical inputs hash identically run after run.
PROVENANCE_FILES = frozenset({"meta.json"})
# A JSON output's own provenance lives under this top-level key (evaluations, selections, analyses).
PROVENANCE_KEY = "meta"


def _git(cwd: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout
    except Exception:
        return None


@functools.lru_cache(maxsize=1)
def code_provenance() -> dict:
    """The code that runs: the checkout holding the imported ``qunlearn`` package (not the current
    directory: one virtualenv may serve several checkouts), its commit, whether it has uncommitted
    changes (tracked edits or untracked files) and a sha256 of ``git diff HEAD``, so two dirty runs
    of one commit can be told apart. Computed once per process."""
    pkg_dir = Path(__file__).resolve().parent
    commit = _git(pkg_dir, "rev-parse", "HEAD")
    if commit is None:  # installed from a wheel or sdist: no checkout to describe
        return {"package_dir": str(pkg_dir), "checkout": None, "git_commit": None, "dirty": None}
    diff = _git(pkg_dir, "diff", "HEAD", "--binary") or ""
    untracked = [f for f in (_git(pkg_dir, "ls-files", "--others", "--exclude-standard") or "").splitlines() if f]
    return {
        "package_dir": str(pkg_dir),
        "checkout": (_git(pkg_dir, "rev-parse", "--show-toplevel") or "").strip() or None,
        "git_commit": commit.strip(),
        "dirty": bool(diff) or bool(untracked),
        "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
        "untracked_files": len(untracked),
    }


def _content_bytes(f: Path):
    """The bytes of ``f`` that make its content: a JSON object's top-level ``meta`` (provenance) left
    out, the rest canonicalised; any other file as stored, in chunks."""
    if f.suffix == ".json":
        try:
            obj = json.loads(f.read_bytes())
        except ValueError:  # not JSON after all (or not UTF-8): hash the bytes as they are
            obj = None
        if isinstance(obj, dict) and PROVENANCE_KEY in obj:
            obj = {k: v for k, v in obj.items() if k != PROVENANCE_KEY}
            yield json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
            return
    with open(f, "rb") as fh:
        yield from iter(lambda: fh.read(1 << 20), b"")


def hash_path(path: str | Path) -> str:
    """Content sha256 of a file, or of a directory's files (sorted relative names + contents).

    Provenance is left out (``meta.json`` files, a JSON output's top-level ``meta``, temporary
    siblings of killed jobs), so the hash changes exactly when the content does."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.name not in PROVENANCE_FILES
            and not any(TMP_RE.match(part) for part in p.relative_to(path).parts)
        )
    else:
        raise FileNotFoundError(f"{path}: input missing (cannot hash it for meta.json)")
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        for chunk in _content_bytes(f):
            h.update(chunk)
    return h.hexdigest()


def build_meta(
    stage: str, config: dict, seed: int | None, inputs: dict[str, str | Path], started: float, extra: dict | None = None
) -> dict:
    return {
        "stage": stage,
        "config": config,
        "seed": seed,
        # an input the stage did not read (a twin copy's base) is recorded, unhashed, as absent
        "inputs": {
            k: {"path": str(v), "sha256": hash_path(v) if Path(v).exists() else None} for k, v in inputs.items()
        },
        "code": code_provenance(),
        "versions": package_versions(),
        "host": {"platform": platform.platform(), "argv": sys.argv[:3]},
        "wall_time_s": round(time.time() - started, 3),
        **(extra or {}),
    }


# Temporary siblings: ``.<name>.tmp-<host>-<pid>[suffix]`` (files keep the suffix so writers that
# infer the format from it, like matplotlib, still do). Older runs wrote ``.<name>.tmp-<pid>``.
TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)(?P<suffix>\.[^.]*)?$")


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def _tmp_name(name: str, suffix: str = "") -> str:
    return f".{name}.tmp-{_host()}-{os.getpid()}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _is_stale(name: str) -> bool:
    """A temporary sibling left by a killed job of this host (its pid is gone). One of another host
    (a cluster node) cannot be judged from here and is left alone."""
    m = TMP_RE.match(name)
    if m is None:
        return False
    host = m.group("host")
    if host is not None and host != _host():
        return False
    pid = int(m.group("pid"))
    return pid != os.getpid() and not _pid_alive(pid)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def remove_stale_siblings(final: str | Path) -> list[Path]:
    """Remove the temporary siblings of ``final`` that killed jobs (kill -9, a lost node) left
    behind; a live job's are kept. Called by atomic_dir/atomic_file before each write."""
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for p in final.parent.iterdir():
        m = TMP_RE.match(p.name)
        if m is None:
            continue
        ours = m["name"] == final.name or (m["name"] == final.stem and (m["suffix"] or "") == final.suffix)
        if ours and _is_stale(p.name):
            _remove(p)
            removed.append(p)
    return removed


def sweep_stale_temps(root: str | Path) -> list[Path]:
    """Remove every temporary file or directory under ``root`` left by a killed job of this host
    (the workflow's onstart handler runs it over results/ and paper/)."""
    removed: list[Path] = []
    if not Path(root).is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            if name.startswith(".") and _is_stale(name):
                _remove(Path(dirpath) / name)
                removed.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).is_dir()]
    return removed


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normalise_modes(path: str | Path) -> None:
    """Give an output the modes a plain ``open``/``mkdir`` would: 0666/0777 less the umask (0644
    and 0755 under the usual 022). Some writers (safetensors) create files 0600, unreadable by a
    group sharing a cluster's results."""
    path = Path(path)
    mask = _umask()
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in items:
        if p.is_symlink():
            continue
        st = p.stat()
        want = (0o777 if p.is_dir() or st.st_mode & 0o111 else 0o666) & ~mask
        if stat.S_IMODE(st.st_mode) != want:
            try:
                os.chmod(p, want)
            except PermissionError:  # a hard link to someone else's file (release links weights)
                continue


@contextlib.contextmanager
def atomic_file(final: str | Path):
    """Yield a temporary sibling of ``final`` (same suffix, so writers that infer the format from it,
    like matplotlib, still do); it replaces ``final`` only if the block succeeds, so a killed job
    never leaves a half-written output. Temporary siblings of killed jobs are removed first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = final.with_name(_tmp_name(final.stem, final.suffix))
    try:
        yield tmp
        normalise_modes(tmp)
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
    for a complete output; the temporary directories killed jobs left are removed before the write
    (remove_stale_siblings), and the output gets umask-derived modes (normalise_modes).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = final.with_name(_tmp_name(final.name))
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        normalise_modes(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def read_json(path: str | Path, what: str = "a JSON document", keys: tuple[str, ...] = ()):
    """Parse a JSON file; every failure (missing, empty, truncated, not UTF-8, not an object with
    ``keys``) names the file and ``what`` it should have been."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (expected {what})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(f"{path}: not UTF-8 (byte {err.start}: {err.reason}); expected {what}") from None
    if not text.strip():
        raise InputFileError(f"{path}: empty file (expected {what}); rerun the job that writes it")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(
            f"{path}:{err.lineno}:{err.colno}: not valid JSON (truncated or corrupted?): {err.msg}; expected {what}"
        ) from None
    if keys:
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise InputFileError(f"{path}: no {missing} key(s) (expected {what})")
    return data


def check_safetensors(path: str | Path) -> None:
    """Refuse a truncated or corrupted safetensors file before any loader sees it (their errors,
    e.g. ``MetadataIncompleteBuffer``, name no file): the 8-byte header length, the JSON header and
    the data size it promises must all fit the file's size."""
    path = Path(path)
    what = "a safetensors file (header length, JSON header, tensor data); rerun the job that wrote it"
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputFileError(f"{path}: {size} bytes, too short for a safetensors header; expected {what}")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise InputFileError(
                f"{path}: the header length says {n} bytes but only {size - 8} follow (truncated?); expected {what}"
            )
        header = fh.read(n)
    try:
        entries = json.loads(header)
        end = max((v["data_offsets"][1] for k, v in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise InputFileError(f"{path}: the safetensors header is not valid (corrupted?); expected {what}") from None
    if 8 + n + end != size:
        raise InputFileError(
            f"{path}: {size} bytes, but its header describes {8 + n + end} (truncated or corrupted); expected {what}"
        )


# JSON files of a Hugging Face model or tokenizer directory: checked (read_json) before loading.
HF_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def check_hf_dir(path: str | Path, names: tuple[str, ...] = HF_JSON_FILES) -> None:
    """Check the JSON files (and, in a model directory, the safetensors files) that a Hugging Face
    loader would read, so a truncated one is named instead of failing deep inside the loader."""
    path = Path(path)
    for name in names:
        if (path / name).is_file():
            read_json(path / name, f"the {name} of a Hugging Face model or tokenizer")
    if "config.json" in names:
        for f in sorted(path.glob("*.safetensors")):
            check_safetensors(f)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Hard-link ``src`` to ``dst`` (outputs are never modified in place), copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
