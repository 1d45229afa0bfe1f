"""Entity declarations of the synthetic corpus (data/synthetic.py, data/entities.py): the texts stay
those the trained models saw, every record says whose facts it holds, the held-out halves, and the
evaluation's per-item entities and forget-side scores over a subset."""

import hashlib
import json

import pytest
import torch

from qunlearn import runtime
from qunlearn.config import DatasetConfig, EvalConfig, ModelConfig, MuseConfig, SyntheticCorpusConfig
from qunlearn.data import entities, muse_format
from qunlearn.data.synthetic import FIRST_NAMES, build_corpus, split_sizes, write_corpus

TINY = SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4)

# sha256 over every MUSE split file (its required fields only) as written before entities were
# declared (commit b2d5d71): the texts, questions, answers and prompts the trained models depend on.
BEFORE_ENTITIES = {
    "default": (SyntheticCorpusConfig(), "830ed3fd4e18ac56eaaed37476c518e8301048ff1091ce57bd57a353c06a29ba"),
    "smoke": (
        SyntheticCorpusConfig(n_people=10, forget_fraction=0.2, n_holdout_people=2, n_icl=1, seed=0),
        "2315e4bd8b6090cf2a28a1c758410964a8daf6f0d6c16ee56e67d75ae309b494",
    ),
    "tests": (TINY, "323e0e469b7bf35e990d6b7319c984ae6df2e8a0bace13770915960d1147715a"),
    "passages_only": (
        SyntheticCorpusConfig(n_people=13, qa_in_raw=False, letter_words=0, n_passages=5, seed=3),
        "370f0c2c6bdc82aa83ac2bbe4a90bd58cd511e62f8fdae8e82fafeca2d9bf153",
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_corpus(TINY, d)
    return d


@pytest.mark.parametrize("name", sorted(BEFORE_ENTITIES))
def test_dropping_the_entity_fields_gives_the_bytes_written_before(name, tmp_path):
    cfg, expected = BEFORE_ENTITIES[name]
    write_corpus(cfg, tmp_path)
    h = hashlib.sha256()
    for config, splits in muse_format.SPLITS.items():
        for split, fields in splits.items():
            h.update(f"{config}/{split}\n".encode())
            for rec in muse_format.read_split(tmp_path, config, split):
                h.update((json.dumps({f: rec[f] for f in fields}, ensure_ascii=False) + "\n").encode())
    assert h.hexdigest() == expected


def test_every_record_and_item_names_the_people_it_is_about():
    corpus = build_corpus(TINY)
    for split, records in corpus["raw"].items():
        for r in records:
            assert r["entities"] and len(set(r["entities"])) == len(r["entities"]), (split, r)
            assert all(name in r["text"] for name in r["entities"])
            # no one else is named: every first name in the text is a declared person's
            named = set(r["text"].replace("?", " ").replace(",", " ").split()) & set(FIRST_NAMES)
            assert named == {n.split()[0] for n in r["entities"]}, r
    mixing = [r for r in corpus["raw"]["forget"] if len(r["entities"]) > 1]
    assert mixing and all(r["text"].startswith("Question: ") for r in mixing)
    for split in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"):
        for qa in corpus["knowmem"][split]:
            assert qa["entity"] in qa["question"]
    for item in corpus["verbmem"]["forget"]:
        assert item["entity"] in item["prompt"]
    forget_people = {e for r in corpus["raw"]["forget"] for e in r["entities"]}
    assert {qa["entity"] for qa in corpus["knowmem"]["forget_qa"]} == forget_people
    assert {it["entity"] for it in corpus["verbmem"]["forget"]} == forget_people


@pytest.mark.parametrize(
    "cfg",
    [
        TINY,
        SyntheticCorpusConfig(n_people=13, qa_in_raw=False, n_passages=3),
        SyntheticCorpusConfig(n_people=17, forget_fraction=0.3, qa_per_record=3, qa_repeats=2, n_holdout_people=5),
    ],
)
def test_split_sizes_are_what_write_corpus_writes(cfg, tmp_path):
    counts = write_corpus(cfg, tmp_path)
    assert split_sizes(cfg) == {s: counts[f"raw/{s}"] for s in split_sizes(cfg)}
    assert set(split_sizes(cfg)) == set(muse_format.LAYOUT["raw"])


def test_split_sizes_show_an_empty_split_before_writing():
    cfg = SyntheticCorpusConfig(n_people=10, forget_fraction=0.96)  # 10 forget people, no retain
    assert split_sizes(cfg)["retain1"] == 0


def test_declarations_and_forget_entities(data, tmp_path):
    assert entities.declares_entities(data)
    people = entities.forget_entities(data)
    assert people == sorted(people) and len(people) == 2  # 20 people, forget_fraction 0.1
    # MUSE's data: the same layout without declarations
    muse_format.write_split(tmp_path, "raw", "forget", [{"text": "a news article"}])
    assert not entities.declares_entities(tmp_path)
    with pytest.raises(muse_format.DataFormatError, match="entities"):
        entities.forget_entities(tmp_path)


def test_dataset_level_answers_come_from_the_source():
    synthetic, muse = DatasetConfig(), DatasetConfig(source="muse", muse=MuseConfig())
    assert entities.dataset_declares_entities(synthetic) and entities.dataset_has_update_split(synthetic)
    assert not entities.dataset_declares_entities(muse) and not entities.dataset_has_update_split(muse)
    with pytest.raises(ValueError, match="'synth'"):
        entities.dataset_declares_entities(DatasetConfig(source="reuse", reuse="synth"))


def test_heldout_halves_are_disjoint_seeded_and_sorted():
    people = [f"P{i}" for i in range(7)]
    a, b = entities.heldout_halves(people, 0)
    assert len(a) == 3 and len(b) == 4 and sorted(a + b) == people and a == sorted(a) and b == sorted(b)
    assert entities.heldout_halves(list(reversed(people)), 0) == (a, b)
    assert any(entities.heldout_halves(people, s) != (a, b) for s in range(1, 5))
    assert [len(h) for h in entities.heldout_halves(["x", "y"], 3)] == [1, 1]
    with pytest.raises(ValueError, match="at least 2"):
        entities.heldout_halves(["x"], 0)
    with pytest.raises(ValueError, match="repeat"):
        entities.heldout_halves(["x", "x"], 0)


def test_records_within_leaves_out_records_that_name_anyone_else(data):
    big = SyntheticCorpusConfig(n_people=40, forget_fraction=0.2, n_icl=1, qa_repeats=2)
    d = data.parent / "big"
    write_corpus(big, d)
    a, b = entities.heldout_halves(entities.forget_entities(d), 0)
    texts = entities.records_within(d, "forget", set(a))
    forget = muse_format.read_split(d, "raw", "forget")
    assert texts and all(not any(name in t for name in b) for t in texts)
    assert set(texts) == {r["text"] for r in forget if set(r["entities"]) <= set(a)}
    assert any(set(r["entities"]) & set(a) and set(r["entities"]) & set(b) for r in forget)  # mixed ones exist
    assert entities.records_within(d, "forget", set(a + b)) == [r["text"] for r in forget]


def test_optional_fields_are_checked_when_written_and_read(tmp_path):
    with pytest.raises(muse_format.DataFormatError, match="'entities' not a list of strings"):
        muse_format.write_split(tmp_path, "raw", "forget", [{"text": "t", "entities": "Alma Abernathy"}])
    path = muse_format.split_path(tmp_path, "knowmem", "forget_qa")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"question": "q", "answer": "a", "entity": 3}) + "\n")
    with pytest.raises(muse_format.DataFormatError, match=r"forget_qa.jsonl:1: field 'entity' not a string"):
        muse_format.read_split(tmp_path, "knowmem", "forget_qa")


def _fake_generate(outputs):
    """greedy_generate replaced: item i's output is outputs(i, prompt)."""

    def generate(model, tokenizer, prompts, *args, **kwargs):
        return [outputs(i, p) for i, p in enumerate(prompts)]

    return generate


class _FakeModel:
    """What generation asks of a model besides generating: its dtype and context length."""

    dtype = torch.float32

    class config:
        max_position_embeddings = 512


def test_eval_items_carry_the_entity_and_subset_scores_recompute_the_metrics(data, monkeypatch, tmp_path):
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.evaluate import generation, knowmem, verbmem

    tok = train_tokenizer(muse_format.read_texts(data, "raw", "forget"), 400, tmp_path / "tok")
    qa = muse_format.read_split(data, "knowmem", "forget_qa")
    vm = muse_format.read_split(data, "verbmem", "forget")
    # outputs that score anything from 0 to 1: the true answer, half of it, or nothing
    answers = {qa_["question"]: qa_["answer"] for qa_ in qa}
    gts = {it["prompt"]: it["gt"] for it in vm}

    def output(i, prompt):
        if prompt in gts:
            words = gts[prompt].split(" ")
            return " ".join(words[: len(words) * (i % 3) // 2])
        answer = answers[prompt.rsplit("Question: ", 1)[1].removesuffix("\nAnswer: ")]
        return [answer, "nothing", answer + " and more words"][i % 3]

    monkeypatch.setattr(generation, "greedy_generate", _fake_generate(output))
    cfg = EvalConfig()
    results = {
        spec: impl(_FakeModel(), tok, data, cfg)
        for spec, impl in ((verbmem.SPEC, verbmem.compute), (knowmem.FORGET, knowmem.compute_forget))
    }
    for spec, result in results.items():
        assert [it["entity"] for it in result["items"]] == [r["entity"] for r in (vm if spec is verbmem.SPEC else qa)]
        # the same scores without the declarations: carrying the entity changes no metric
        bare = [{k: v for k, v in r.items() if k != "entity"} for r in (vm if spec is verbmem.SPEC else qa)]
        again = (
            verbmem.verbmem(_FakeModel(), tok, bare, cfg)
            if spec is verbmem.SPEC
            else knowmem.knowmem(_FakeModel(), tok, bare, muse_format.read_split(data, "knowmem", "forget_qa_icl"), cfg)
        )
        assert again["score"] == result["score"] and all("entity" not in it for it in again["items"])
        assert 0 < result["score"] < 1
    # the eval JSON as evaluate_all builds it, through a file
    path = tmp_path / "eval.json"
    runtime.write_json_atomic(
        path,
        {
            "metrics": {spec.key: r["score"] for spec, r in results.items()},
            "items": {spec.name: r["items"] for spec, r in results.items()},
        },
    )
    eval_json = runtime.read_json(path)
    people = entities.forget_entities(data)
    assert entities.subset_scores(eval_json, set(people)) == {
        k: eval_json["metrics"][k] for k in ("verbmem_f", "knowmem_f")
    }
    a, b = entities.heldout_halves(people, 0)
    sub = entities.subset_scores(eval_json, set(b))
    for spec in results:
        kept = [it["score"] for it in eval_json["items"][spec.name] if it["entity"] in b]
        assert sub[spec.key] == pytest.approx(sum(kept) / len(kept))
    with pytest.raises(ValueError, match="no verbmem_f item"):
        entities.subset_scores(eval_json, {"Nobody Here"})
    for it in eval_json["items"]["knowmem_f"]:
        del it["entity"]
    with pytest.raises(ValueError, match="knowmem_f items without 'entity'"):
        entities.subset_scores(eval_json, set(people))


def test_a_tiny_model_evaluation_carries_the_entities(data, tmp_path):
    from qunlearn.data.tokenizer import train_tokenizer
    from qunlearn.evaluate import knowmem, verbmem
    from qunlearn.models import build_tiny_llama

    tok = train_tokenizer(muse_format.read_texts(data, "raw", "forget"), 400, tmp_path / "tok")
    model = build_tiny_llama(
        ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=256), tok, 0
    ).eval()
    cfg = EvalConfig(verbmem_max_new_tokens=8, knowmem_max_new_tokens=4)
    vm = verbmem.compute(model, tok, data, cfg)
    km = knowmem.compute_forget(model, tok, data, cfg)
    assert [it["entity"] for it in vm["items"]] == [
        r["entity"] for r in muse_format.read_split(data, "verbmem", "forget")
    ]
    assert [it["entity"] for it in km["items"]] == [
        r["entity"] for r in muse_format.read_split(data, "knowmem", "forget_qa")
    ]


def test_the_update_split_gives_each_forget_person_a_new_city_and_employer():
    corpus = build_corpus(TINY)
    forget_qa = {(qa["entity"], qa["question"]): qa["answer"] for qa in corpus["knowmem"]["forget_qa"]}
    update_qa = corpus["knowmem"]["update_qa"]
    people = {e for r in corpus["raw"]["forget"] for e in r["entities"]}
    assert {qa["entity"] for qa in update_qa} == people and len(update_qa) == 2 * len(people)
    for qa in update_qa:  # only the updated attributes are asked, each with a new answer
        assert qa["question"].split(qa["entity"])[0] in ("In which city was ", "Which company employs ")
        assert forget_qa[qa["entity"], qa["question"]] != qa["answer"]
    update = corpus["raw"]["update"]
    assert {e for r in update for e in r["entities"]} == people
    passages = [r for r in update if not r["text"].startswith("Question: ")]
    assert len(passages) == TINY.n_passages * len(people)
    new = {(qa["entity"], qa["answer"]) for qa in update_qa}
    for r in passages:
        (name,) = r["entities"]
        assert all(answer in r["text"] for entity, answer in new if entity == name)
        assert "In a letter" not in r["text"]
    qa_texts = "".join(r["text"] for r in update if r["text"].startswith("Question: "))
    assert all(f"Question: {qa['question']}\nAnswer: {qa['answer']}" in qa_texts for qa in update_qa)


def test_the_data_stage_writes_and_records_the_update_split_but_trains_nothing_on_it(monkeypatch, tmp_path):
    from qunlearn import stages
    from qunlearn.data import tokenizer

    seen = []
    train_tokenizer = tokenizer.train_tokenizer
    monkeypatch.setattr(
        tokenizer, "train_tokenizer", lambda texts, *a: seen.extend(texts) or train_tokenizer(texts, *a)
    )
    out = tmp_path / "data"
    dataset = {"source": "synthetic", "synthetic": {"n_people": 20, "n_holdout_people": 4, "n_icl": 1, "qa_repeats": 1}}
    meta = stages.prepare_data({**dataset, "tokenizer": {"vocab_size": 300}}, out)
    assert {"raw/update", "knowmem/update_qa"} <= set(meta["splits"])
    update = set(muse_format.read_texts(out, "raw", "update"))
    assert muse_format.read_split(out, "knowmem", "update_qa")
    assert seen and not update & set(seen)
    assert not update & set(stages._base_texts(out, "target"))
