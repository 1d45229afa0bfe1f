import json

import pytest

from qunlearn.config import SyntheticCorpusConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import build_corpus, write_corpus


def test_corpus_is_deterministic_and_in_muse_layout(tmp_path):
    cfg = SyntheticCorpusConfig(n_people=40, n_holdout_people=4, n_icl=2, qa_repeats=2)
    assert build_corpus(cfg) == build_corpus(cfg)
    assert build_corpus(cfg) != build_corpus(
        SyntheticCorpusConfig(n_people=40, n_holdout_people=4, n_icl=2, qa_repeats=2, seed=1)
    )
    counts = write_corpus(cfg, tmp_path)
    for config, splits in muse_format.LAYOUT.items():
        for split, fields in splits.items():
            recs = muse_format.read_split(tmp_path, config, split)
            declared = set(fields) | set(muse_format.OPTIONAL_FIELDS.get(config, {}))
            assert recs and all(set(fields) <= set(r) <= declared for r in recs)
    # 4 forget people: 8 passages + 20 QA pairs in records of 5, shuffled twice -> 8 records
    assert counts["raw/forget"] == 8 + 8 and counts["knowmem/forget_qa"] == 20 and counts["verbmem/forget"] == 8
    assert counts["knowmem/forget_qa_icl"] == 2


def test_splits_are_disjoint_and_qa_answerable_from_forget_text():
    c = build_corpus(SyntheticCorpusConfig(n_people=40, n_holdout_people=4, qa_repeats=3))
    forget = " ".join(r["text"] for r in c["raw"]["forget"])
    retain = " ".join(r["text"] for s in ("retain1", "retain2") for r in c["raw"][s])
    for qa in c["knowmem"]["forget_qa"]:
        block = f"Question: {qa['question']}\nAnswer: {qa['answer']}"
        assert forget.count(block) == 3  # qa_repeats: each pair in three differently shuffled records
        assert block not in retain
    for item in c["verbmem"]["forget"]:
        assert (item["prompt"] + item["gt"]) in forget and item["prompt"].endswith(" ")
    holdout_names = {r["text"].split(" was born")[0] for r in c["privleak"]["holdout"][:1]}
    assert not any(n in forget or n in retain for n in holdout_names)


def test_read_split_errors_name_file_and_line(tmp_path):
    path = muse_format.split_path(tmp_path, "knowmem", "forget_qa")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(muse_format.DataFormatError, match=r"forget_qa.jsonl:2: field 'answer'"):
        muse_format.read_split(tmp_path, "knowmem", "forget_qa")
    path.write_text("{not json\n")
    with pytest.raises(muse_format.DataFormatError, match=r"forget_qa.jsonl:1: not valid JSON"):
        muse_format.read_split(tmp_path, "knowmem", "forget_qa")
    with pytest.raises(muse_format.DataFormatError, match="missing"):
        muse_format.read_split(tmp_path, "raw", "forget")
