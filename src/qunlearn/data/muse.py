"""The MUSE benchmark (Shi et al. 2024) read with ``datasets.load_dataset`` into our MUSE layout.

One call per split, the same for the hub and a local copy::

    datasets.load_dataset(source, config, split=split)   # source = muse-bench/MUSE-News | a directory

``config`` in raw (forget, retain1, retain2, holdout; text), verbmem (forget; prompt, gt), knowmem
(forget_qa, retain_qa, forget_qa_icl, retain_qa_icl; question, answer), privleak (forget, retain,
holdout; text). A local copy (``muse.local_dir``) is either

- a hub snapshot: a README.md whose YAML header declares the configs and their data files
  (``huggingface-cli download --repo-type dataset muse-bench/MUSE-News --local-dir DIR`` gives exactly
  that; ``tests/fixtures/muse-news`` is a small one), each split read with ``load_dataset`` from
  the files the card lists for it (so a file missing from one split fails that split alone); or
- MUSE's own layout, as the benchmark's and the paper's repositories keep it (``data/news`` of a
  clone): ``{raw,verbmem,knowmem,privleak}/<split>.json`` (a JSON list of strings or of records with
  the split's fields; ``.jsonl`` too), raw splits also as ``<split>.txt`` (documents separated by a
  blank line, the form MUSE trains on). A directory without a dataset card is read this way, nothing
  converted or written by hand.

A split the local copy lacks (the paper's repository leaves out some large raw files) is skipped
with a warning and listed under ``missing`` in the data stage's meta.json; what needs it fails later
with a message naming the split, the files looked for and what needs it (muse_format.NEEDED_BY),
and what does not (GA and NPO need no retain set) runs. The splits are written with
data/muse_format.py, the same files the synthetic generator writes; unlearning later cuts raw
forget/retain1 into training examples (``unlearn.data_format``, batching.py).
"""

from __future__ import annotations

import json
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


class MissingSplitError(MuseUnavailableError):
    """A local copy in MUSE's layout has no file for one split."""


def is_muse_layout(path: str | Path) -> bool:
    """A directory in MUSE's own layout: no dataset card (README.md with ``configs:``), and at least
    one of the four config folders."""
    path = Path(path)
    card = path / "README.md"
    if card.is_file() and "configs:" in card.read_text(encoding="utf-8", errors="replace"):
        return False
    return any((path / c).is_dir() for c in muse_format.SPLITS)


def layout_candidates(root: str | Path, config: str, split: str) -> list[Path]:
    """The files MUSE's layout may hold one split in, in the order they are tried."""
    exts = (".json", ".jsonl", ".txt") if config == "raw" else (".json", ".jsonl")
    return [Path(root) / config / f"{split}{ext}" for ext in exts]


def read_muse_layout(root: str | Path, config: str, split: str) -> list[dict]:
    """One split of a directory in MUSE's layout as records with the split's fields."""
    fields = muse_format.SPLITS[config][split]
    candidates = layout_candidates(root, config, split)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise MissingSplitError(
            f"MUSE split {config}/{split}: none of {', '.join(str(p) for p in candidates)} exists; "
            f"it is needed by {muse_format.NEEDED_BY[f'{config}/{split}']}"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        items = [doc for doc in text.split("\n\n") if doc.strip()]
    elif path.suffix == ".jsonl":
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise muse_format.DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(items, list):
            raise muse_format.DataFormatError(f"{path}: expected a JSON list of strings or records")
    records = []
    for i, item in enumerate(items):
        if isinstance(item, str) and fields == ("text",):
            item = {"text": item}
        if not isinstance(item, dict) or any(not isinstance(item.get(f), str) for f in fields):
            raise muse_format.DataFormatError(
                f"{path} item {i}: expected {'a string or ' if fields == ('text',) else ''}"
                f"a record with string field(s) {list(fields)}, got {str(item)[:200]}"
            )
        records.append({f: item[f] for f in fields})
    if not records:
        raise muse_format.DataFormatError(f"{path}: no records")
    return records


BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def card_files(root: str | Path, config: str, split: str) -> tuple[list[str], list[Path]] | None:
    """The data-file patterns a hub snapshot's dataset card lists for one split, and the files they
    match; None when the card does not list the split (then ``load_dataset`` decides)."""
    import yaml

    text = (Path(root) / "README.md").read_text(encoding="utf-8")
    parts = text.split("---")
    if len(parts) < 3:
        return None
    header = yaml.safe_load(parts[1]) or {}
    for entry in header.get("configs") or []:
        if entry.get("config_name") != config:
            continue
        for df in entry.get("data_files") or []:
            if isinstance(df, dict) and df.get("split") == split:
                patterns = [df["path"]] if isinstance(df["path"], str) else list(df["path"])
                return patterns, sorted(f for pat in patterns for f in Path(root).glob(pat) if f.is_file())
    return None


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
    if cfg.local_dir and is_muse_layout(source):
        records = read_muse_layout(source, config, split)
        return records if cfg.max_items is None else records[: cfg.max_items]
    listed = card_files(source, config, split) if cfg.local_dir else None
    if listed is not None and not listed[1]:
        patterns = ", ".join(str(Path(source) / p) for p in listed[0])
        raise MissingSplitError(
            f"MUSE split {config}/{split}: the dataset card lists {patterns}, which is not there; "
            f"it is needed by {muse_format.NEEDED_BY[f'{config}/{split}']}"
        )
    if listed is not None and all(not f.read_bytes().strip() for f in listed[1]):
        raise _empty_split(cfg, config, split, source)  # datasets' json builder would stop without a word
    try:
        if listed is not None and len({BUILDERS.get(f.suffix) for f in listed[1]} - {None}) == 1:
            # the split's own files only: a file missing from another split of the config (which
            # load_dataset(source, config) would trip over) does not stop this one
            builder = BUILDERS[listed[1][0].suffix]
            files = [str(f) for f in listed[1]]
            ds = datasets.load_dataset(builder, data_files=files, split="train", cache_dir=cfg.cache_dir)
        else:
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
    """Every MUSE split into ``out_dir`` in our layout; returns {config/split: count}, and under
    ``missing`` {config/split: why} for the splits a local copy in MUSE's layout lacks."""
    counts: dict = {}
    for config, splits in muse_format.SPLITS.items():
        for split in splits:
            try:
                records = load_split(cfg, config, split, where)
            except MissingSplitError as err:
                log.warning("%s.local_dir: %s; skipped", where, err)
                counts.setdefault("missing", {})[f"{config}/{split}"] = str(err)
                continue
            muse_format.write_split(out_dir, config, split, records)
            counts[f"{config}/{split}"] = len(records)
            log.info("MUSE %s/%s: %d records", config, split, len(records))
    return counts
