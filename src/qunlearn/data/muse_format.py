"""The MUSE data layout on disk, shared by the synthetic generator and the hub loader.

MUSE (Shi et al. 2024) ships four configs per corpus; we store each split as JSON Lines:

    {data_dir}/raw/{forget,retain1,retain2,holdout}.jsonl          {"text"}
    {data_dir}/verbmem/forget.jsonl                                 {"prompt", "gt"}
    {data_dir}/knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}.jsonl  {"question", "answer"}
    {data_dir}/privleak/{forget,retain,holdout}.jsonl               {"text"}
    {data_dir}/tokenizer/                                           a Hugging Face tokenizer
"""

from __future__ import annotations

import json
from pathlib import Path

SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw": {s: ("text",) for s in ("forget", "retain1", "retain2", "holdout")},
    "verbmem": {"forget": ("prompt", "gt")},
    "knowmem": {s: ("question", "answer") for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")},
    "privleak": {s: ("text",) for s in ("forget", "retain", "holdout")},
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
}


class DataFormatError(ValueError):
    """A data file is missing or does not follow the MUSE layout; the message names file and line."""


def split_path(data_dir: str | Path, config: str, split: str) -> Path:
    if config not in SPLITS or split not in SPLITS[config]:
        raise KeyError(f"unknown MUSE split {config}/{split}")
    return Path(data_dir) / config / f"{split}.jsonl"


def write_split(data_dir: str | Path, config: str, split: str, records: list[dict]) -> Path:
    fields = SPLITS[config][split]
    path = split_path(data_dir, config, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, rec in enumerate(records):
            missing = [f for f in fields if not isinstance(rec.get(f), str)]
            if missing:
                raise DataFormatError(f"{config}/{split} record {i}: missing string field(s) {missing}")
            fh.write(json.dumps({f: rec[f] for f in fields}, ensure_ascii=False) + "\n")
    return path


def read_split(data_dir: str | Path, config: str, split: str) -> list[dict]:
    """Read and validate one split; errors name the file and the 1-based line."""
    fields = SPLITS[config][split]
    path = split_path(data_dir, config, split)
    if not path.is_file():
        raise DataFormatError(
            f"{path}: missing (MUSE split {config}/{split}, needed by {NEEDED_BY[f'{config}/{split}']}); "
            f"the data stage's meta.json lists the splits its source lacked"
        )
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object")
            for f in fields:
                if not isinstance(rec.get(f), str):
                    raise DataFormatError(f"{path}:{lineno}: field {f!r} missing or not a string")
            records.append(rec)
    if not records:
        raise DataFormatError(f"{path}: no records")
    return records


def read_texts(data_dir: str | Path, config: str, split: str) -> list[str]:
    return [r["text"] for r in read_split(data_dir, config, split)]
