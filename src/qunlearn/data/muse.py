"""The MUSE benchmark (Shi et al. 2024) read with ``datasets.load_dataset`` into our MUSE layout.

One call per split, the same for the hub and a local copy::

    datasets.load_dataset(source, config, split=split)   # source = muse-bench/MUSE-News | a directory

``config`` in raw (forget, retain1, retain2, holdout; text), verbmem (forget; prompt, gt), knowmem
(forget_qa, retain_qa, forget_qa_icl, retain_qa_icl; question, answer), privleak (forget, retain,
holdout; text). A local copy is a directory as the hub serves it: a README.md whose YAML header
declares the configs and their data files (``huggingface-cli download --repo-type dataset
muse-bench/MUSE-News --local-dir DIR`` gives exactly that; ``tests/fixtures/muse-news`` is a small
one in the hub schema). The splits are written with data/muse_format.py, the same files the
synthetic generator writes; unlearning later cuts raw forget/retain1 into ``model.max_length``
token chunks (batching.encode_documents), as MUSE's own code does.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import MuseConfig
from . import muse_format

log = logging.getLogger(__name__)


class MuseUnavailableError(RuntimeError):
    """The MUSE data can be read neither from the hub nor from a local copy."""


def source_of(cfg: MuseConfig) -> str:
    if cfg.local_dir:
        path = Path(cfg.local_dir).expanduser()
        if not path.is_dir():
            raise MuseUnavailableError(f"muse.local_dir: {path} is not a directory (a local copy of {cfg.hub_id})")
        return str(path)
    return cfg.hub_id


def _how_to_provide(cfg: MuseConfig, where: str) -> str:
    return (
        f"Provide {cfg.hub_id} one of these ways: (1) download it where there is network, "
        f"`huggingface-cli download --repo-type dataset {cfg.hub_id} --local-dir DIR`, copy DIR here and "
        f"set {where}.local_dir: DIR; (2) fill the datasets cache once online (same "
        f"{where}.cache_dir / HF_DATASETS_CACHE) and run with HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1; "
        f"(3) make the hub reachable (HF_ENDPOINT for a mirror, HF_TOKEN if needed)."
    )


def _declared_files(cfg: MuseConfig, config: str, split: str) -> str:
    """Where a local copy declares the data of ``config/split`` (its README.md header), for messages."""
    if not cfg.local_dir:
        return f"{cfg.hub_id} ({config}/{split})"
    readme = Path(cfg.local_dir).expanduser() / "README.md"
    try:
        import yaml

        header = readme.read_text(encoding="utf-8").split("---")[1]
        for c in yaml.safe_load(header).get("configs", []):
            if c.get("config_name") == config:
                for d in c.get("data_files", []):
                    if d.get("split") == split:
                        paths = d["path"] if isinstance(d["path"], list) else [d["path"]]
                        return ", ".join(str(Path(cfg.local_dir).expanduser() / p) for p in paths)
    except Exception:  # no or odd header: name the directory
        pass
    return f"{cfg.local_dir} ({config}/{split})"


def _empty_split(cfg: MuseConfig, config: str, split: str, source: str) -> muse_format.DataFormatError:
    return muse_format.DataFormatError(
        f"MUSE split {config}/{split} of {source} is empty: {_declared_files(cfg, config, split)} holds no "
        f"records (expected {list(muse_format.SPLITS[config][split])} records). The copy is incomplete: "
        "download that file again"
    )


def load_split(cfg: MuseConfig, config: str, split: str, where: str = "muse") -> list[dict]:
    """Records of one MUSE split as plain dicts with the hub's fields; clear error when unreachable."""
    import datasets

    fields = muse_format.SPLITS[config][split]
    source = source_of(cfg)
    try:
        ds = datasets.load_dataset(source, config, split=split, revision=cfg.revision, cache_dir=cfg.cache_dir)
    except datasets.exceptions.DatasetGenerationError as err:  # a data file does not fit the schema
        cause = err.__cause__ or err
        raise muse_format.DataFormatError(
            f"{source} {config}/{split}: the data files do not follow the MUSE schema "
            f"(fields {list(fields)}): {type(cause).__name__}: {str(cause)[:500]}"
        ) from None
    except (ConnectionError, OSError, FileNotFoundError, ValueError) as err:
        if "corresponds to no data" in str(err):  # datasets' word for a declared split without records
            raise _empty_split(cfg, config, split, source) from None
        if cfg.local_dir:
            raise MuseUnavailableError(
                f"{where}.local_dir={cfg.local_dir}: cannot load MUSE {config}/{split} from it "
                f"({type(err).__name__}: {err}). The directory must hold the hub's README.md (configs) "
                f"and data files. " + _how_to_provide(cfg, where)
            ) from None
        raise MuseUnavailableError(
            f"cannot load {cfg.hub_id} ({config}/{split}) from the hub and no local copy is configured "
            f"({type(err).__name__}: {err}). " + _how_to_provide(cfg, where)
        ) from None
    missing = [f for f in fields if f not in ds.column_names]
    if missing:
        raise muse_format.DataFormatError(
            f"{source} {config}/{split}: missing field(s) {missing}; has {ds.column_names}"
        )
    if len(ds) == 0:
        raise _empty_split(cfg, config, split, source)
    n = len(ds) if cfg.max_items is None else min(len(ds), cfg.max_items)
    records = [{f: ds[i][f] for f in fields} for i in range(n)]
    for i, rec in enumerate(records):
        bad = [f for f in fields if not isinstance(rec[f], str)]
        if bad:
            raise muse_format.DataFormatError(f"{source} {config}/{split} row {i}: field(s) {bad} not strings")
    return records


def write_muse(cfg: MuseConfig, out_dir: str | Path, where: str = "muse") -> dict[str, int]:
    """Every MUSE split into ``out_dir`` in our layout; returns {config/split: count}."""
    counts = {}
    for config, splits in muse_format.SPLITS.items():
        for split in splits:
            records = load_split(cfg, config, split, where)
            muse_format.write_split(out_dir, config, split, records)
            counts[f"{config}/{split}"] = len(records)
            log.info("MUSE %s/%s: %d records", config, split, len(records))
    return counts
