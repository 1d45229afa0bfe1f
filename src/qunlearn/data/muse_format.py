"""The MUSE data layout on disk, shared by the synthetic generator and the hub loader.

MUSE (Shi et al. 2024) ships four configs per corpus; we store each split as JSON Lines:

    {data_dir}/raw/{forget,retain1,retain2,holdout}.jsonl          {"text"}
    {data_dir}/verbmem/forget.jsonl                                 {"prompt", "gt"}
    {data_dir}/knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}.jsonl  {"question", "answer"}
    {data_dir}/privleak/{forget,retain,holdout}.jsonl               {"text"}
    {data_dir}/tokenizer/                                           a Hugging Face tokenizer

The synthetic corpus also writes two splits MUSE lacks (``EXTRA_SPLITS``), and declares whose facts
each record holds (``OPTIONAL_FIELDS``): raw records a list ``entities``, verbmem and knowmem items
one ``entity``. Readers keep these fields; MUSE's own data has none (data/entities.py).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from .. import runtime

SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw": {s: ("text",) for s in ("forget", "retain1", "retain2", "holdout")},
    "verbmem": {"forget": ("prompt", "gt")},
    "knowmem": {s: ("question", "answer") for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")},
    "privleak": {s: ("text",) for s in ("forget", "retain", "holdout")},
}
# Splits only the synthetic corpus has (LLM Surgery's update set: the forget people with changed
# attributes, and QA on them); no MUSE source is asked for them.
EXTRA_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw": {"update": ("text",)},
    "knowmem": {"update_qa": ("question", "answer")},
}
# Every split a data directory may hold: MUSE's, then the extra ones.
LAYOUT: dict[str, dict[str, tuple[str, ...]]] = {
    config: {**splits, **EXTRA_SPLITS.get(config, {})} for config, splits in SPLITS.items()
}

ENTITIES = "entities"  # raw record: the full names of the people its text mentions
ENTITY = "entity"  # verbmem/knowmem item: the full name of the person it is about


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


# Optional per-record fields: name -> (what it must be, its check); written after the required
# fields when a record has them, checked when read.
OPTIONAL_FIELDS: dict[str, dict[str, tuple[str, Callable[[object], bool]]]] = {
    "raw": {ENTITIES: ("a list of strings", _is_str_list)},
    "verbmem": {ENTITY: ("a string", _is_str)},
    "knowmem": {ENTITY: ("a string", _is_str)},
}


# What reads each split (the missing-split errors name it). raw/retain2 and raw/holdout are read
# only to train a tokenizer or bases here, or as GPTQ/AWQ calibration text (calibration_split).
NEEDED_BY: dict[str, str] = {
    "raw/forget": "unlearning (every method), and training a target here",
    "raw/retain1": "the methods with a retain term (GDR, KLR, their SURE variants; not GA, NPO, SimNPO), "
    "and training bases here",
    "raw/retain2": "GPTQ/AWQ calibration (calibration_split: retain2, the default), and training bases here",
    "raw/holdout": "GPTQ/AWQ calibration with calibration_split: holdout, and training a tokenizer here",
    "verbmem/forget": "M1 VerbMem (metric verbmem_f)",
    "knowmem/forget_qa": "M2 KnowMem on D_f (metric knowmem_f)",
    "knowmem/forget_qa_icl": "M2 KnowMem on D_f (metric knowmem_f), its in-context shots",
    "knowmem/retain_qa": "M4 KnowMem on D_r (metric knowmem_r) and the alpha selection",
    "knowmem/retain_qa_icl": "M4 KnowMem on D_r (metric knowmem_r), its in-context shots",
    "privleak/forget": "M3 PrivLeak (metric privleak), the members",
    "privleak/retain": "nothing in this pipeline (MUSE ships it)",
    "privleak/holdout": "M3 PrivLeak (metric privleak), the non-members",
    "raw/update": "LLM Surgery's update term (synthetic data only)",
    "knowmem/update_qa": "KnowMem on the update set (synthetic data only)",
}


class DataFormatError(runtime.InputFileError):
    """A data file is missing or does not follow the MUSE layout, or differs from what the data stage
    recorded; the message names the file (and line)."""


# prepare_data records, in {data_dir}/meta.json under this key, each split's record count and the
# sha256 of its file; every read checks the file against that record (hashing a file once per process).
MANIFEST_KEY = "splits"
_verified: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256, this process
_manifests: dict[tuple, dict | None] = {}


def split_key(config: str, split: str) -> str:
    return f"{config}/{split}"


def split_path(data_dir: str | Path, config: str, split: str) -> Path:
    if config not in LAYOUT or split not in LAYOUT[config]:
        raise KeyError(f"unknown MUSE split {config}/{split}")
    return Path(data_dir) / config / f"{split}.jsonl"


def _optional_field_errors(config: str, rec: dict) -> list[str]:
    return [
        f"field {name!r} not {kind}"
        for name, (kind, ok) in OPTIONAL_FIELDS.get(config, {}).items()
        if name in rec and not ok(rec[name])
    ]


def write_split(data_dir: str | Path, config: str, split: str, records: list[dict]) -> Path:
    """One JSON object a line: the split's fields, then those optional fields a record has."""
    fields = LAYOUT[config][split]
    optional = tuple(OPTIONAL_FIELDS.get(config, {}))
    if not records:
        raise DataFormatError(f"{config}/{split}: no records to write (expected at least one {list(fields)} record)")
    path = split_path(data_dir, config, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, rec in enumerate(records):
            missing = [f for f in fields if not isinstance(rec.get(f), str)]
            if missing:
                raise DataFormatError(f"{config}/{split} record {i}: missing string field(s) {missing}")
            bad = _optional_field_errors(config, rec)
            if bad:
                raise DataFormatError(f"{config}/{split} record {i}: {'; '.join(bad)}")
            out = {f: rec[f] for f in fields + optional if f in rec}
            fh.write(json.dumps(out, ensure_ascii=False) + "\n")
    return path


def _count(raw: bytes) -> int:
    return sum(1 for line in raw.split(b"\n") if line.strip())


def split_manifest(data_dir: str | Path) -> dict[str, dict]:
    """{config/split: {"records": n, "sha256": hex}} of every split file in ``data_dir``: what
    prepare_data records in meta.json and every reader checks. A split its source lacked (a MUSE
    clone without some raw files) has no file and no entry; reading it fails naming what needs it."""
    out = {}
    for config, splits in LAYOUT.items():
        for split in splits:
            path = split_path(data_dir, config, split)
            if not path.is_file():
                continue
            raw = path.read_bytes()
            out[split_key(config, split)] = {"records": _count(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    return out


def _manifest(data_dir: Path) -> tuple[Path, dict | None]:
    """The data stage's per-split record, or None for a directory without meta.json (one made by
    hand or by a test: nothing recorded to check against)."""
    meta = data_dir / "meta.json"
    try:
        st = meta.stat()
    except FileNotFoundError:
        return meta, None
    key = (str(meta.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _manifests:
        data = runtime.read_json(meta, "the data stage's meta.json")
        if not isinstance(data, dict) or not isinstance(data.get(MANIFEST_KEY), dict):
            raise DataFormatError(
                f"{meta}: no per-split record counts and hashes ({MANIFEST_KEY!r}); it was written by an "
                "older qunlearn. Rerun the data stage (snakemake --forcerun prepare_data)"
            )
        _manifests[key] = data[MANIFEST_KEY]
    return meta, _manifests[key]


def check_split(data_dir: str | Path, config: str, split: str, raw: bytes | None = None) -> None:
    """Check a split file against the count and sha256 the data stage recorded for it; a file that
    lost records (truncated at a line boundary), gained or changed any is refused, naming it."""
    path = split_path(data_dir, config, split)
    meta, manifest = _manifest(Path(data_dir))
    if manifest is None:
        return
    key = split_key(config, split)
    if key not in manifest:
        raise DataFormatError(f"{meta}: records no split {key} (it lists {sorted(manifest)})")
    st = path.stat()
    stat_key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    expected = manifest[key]
    if _verified.get(stat_key) == expected.get("sha256"):
        return
    raw = path.read_bytes() if raw is None else raw
    found = {"records": _count(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if found != {"records": expected.get("records"), "sha256": expected.get("sha256")}:
        raise DataFormatError(
            f"{path}: differs from what the data stage recorded in {meta}: expected "
            f"{expected.get('records')} records, sha256 {expected.get('sha256')}; found {found['records']} "
            f"records, sha256 {found['sha256']}. The file was truncated, edited or corrupted after it was "
            "written: restore it or rerun the data stage (snakemake --forcerun prepare_data)"
        )
    _verified[stat_key] = found["sha256"]


def split_record(data_dir: str | Path, config: str, split: str) -> dict:
    """{"records": n, "sha256": hex} of one split: what the data stage recorded for it (every read
    checks the file against that), or the file's own count and hash in a directory without
    meta.json (made by hand or by a test)."""
    _, manifest = _manifest(Path(data_dir))
    key = split_key(config, split)
    if manifest is not None and key in manifest:
        return {"records": manifest[key]["records"], "sha256": manifest[key]["sha256"]}
    raw = split_path(data_dir, config, split).read_bytes()
    return {"records": _count(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def seeded_subset(n: int, k: int, seed: int) -> list[int]:
    """Indices of ``k`` of ``n`` records (all when k >= n): the first k of a seeded shuffle of
    0..n-1, in shuffled order (calibration sets, relearning subsets)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[:k]


def texts_sha256(texts: list[str]) -> str:
    """One hash of an ordered list of texts (its JSON form: no two lists share it)."""
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()


def read_split(data_dir: str | Path, config: str, split: str) -> list[dict]:
    """Read and validate one split (checked against the data stage's record first); errors name the
    file and the 1-based line."""
    fields = LAYOUT[config][split]
    path = split_path(data_dir, config, split)
    if not path.is_file():
        raise DataFormatError(
            f"{path}: missing (MUSE split {config}/{split}, needed by {NEEDED_BY[f'{config}/{split}']}); "
            f"the data stage's meta.json lists the splits its source lacked"
        )
    raw = path.read_bytes()
    check_split(data_dir, config, split, raw)
    records = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataFormatError(
                f"{path}:{lineno}: not UTF-8 (byte {err.start} of the line: {err.reason}); "
                "MUSE splits are UTF-8 JSON Lines"
            ) from None
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(rec, dict):
            raise DataFormatError(f"{path}:{lineno}: expected a JSON object")
        for f in fields:
            if not isinstance(rec.get(f), str):
                raise DataFormatError(f"{path}:{lineno}: field {f!r} missing or not a string")
        bad = _optional_field_errors(config, rec)
        if bad:
            raise DataFormatError(f"{path}:{lineno}: {'; '.join(bad)}")
        records.append(rec)
    if not records:
        raise DataFormatError(
            f"{path}: no records (MUSE split {config}/{split} is empty; expected one {list(fields)} object per line)"
        )
    return records


def read_texts(data_dir: str | Path, config: str, split: str) -> list[str]:
    return [r["text"] for r in read_split(data_dir, config, split)]
