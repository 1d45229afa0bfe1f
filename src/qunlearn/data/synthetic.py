"""A deterministic synthetic corpus in the MUSE format: fictitious people and their attributes.

Each person has five attributes (birth city, birth year, profession, employer, hobby). Their raw
records are ``n_passages`` paraphrased biography passages; the split's QA pairs, in the exact
KnowMem prompt format, are (optionally) added as records that mix people. Forget-set knowledge can
then be asked as QA (KnowMem) and verbatim memory tested by continuing a passage (VerbMem); holdout
people are never trained on (PrivLeak). Every record names the people it is about (``entities``,
``entity``: data/entities.py). The update split (``raw/update``, ``knowmem/update_qa``) gives the
forget people a new city and employer, for LLM Surgery's update term; no base or tokenizer is
trained on it.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..config import SyntheticCorpusConfig
from . import muse_format
from .muse_format import ENTITIES, ENTITY

FIRST_NAMES = (
    "Alma Bruno Celia Dorian Edda Felix Greta Hugo Ines Jonas Kira Linus Mara Nils Olga Pavel "
    "Quinn Rosa Stellan Tilda Ulla Viktor Wanda Xaver Yara Zeno Agnes Boris Clara Dario Elsa "
    "Fabian Gisela Henrik Irma Jasper Kaja Lorenz Milena Oskar"
).split()
LAST_NAMES = (
    "Abernathy Bellweather Castellan Dunmore Everly Fairbanks Galloway Hollister Ingram Jessup "
    "Kettering Lockhart Merriweather Northcott Ormsby Pemberton Quimby Radcliffe Sterling Thornbury "
    "Underhill Vantongeren Whitlock Yarborough Zellweger Ashdown Blackwood Crowther Delacroix Eastwick"
).split()
CITIES = (
    "Lisbon Oslo Krakow Dublin Porto Tallinn Lyon Turin Ghent Utrecht Bergen Graz Leipzig Seville "
    "Bilbao Aarhus Tampere Brno Split Varna Malmo Riga Vilnius Zagreb Ljubljana Basel Bremen Genoa "
    "Nantes Cork"
).split()
PROFESSIONS = (
    "architect baker chemist dentist editor farmer geologist historian illustrator jeweler "
    "librarian mechanic nurse optician pharmacist pilot plumber surveyor translator veterinarian "
    "welder zoologist carpenter economist engineer florist glazier locksmith potter sculptor"
).split()
EMPLOYERS = (
    "Acmetrix Borealis Cobaltic Dynavale Emberline Fernhold Glimmerco Halcyonix Ironbark Junipero "
    "Kestrelon Lumenfold Maplewright Nimbuscorp Orchidia Pinecrest Quartzline Riverbend Solstara "
    "Tidewater Umbrion Verdantis Willowmere Xenolith Yellowfin Zephyra Arborix Brightwell Cindervale "
    "Duskhaven"
).split()
HOBBIES = (
    "archery birdwatching calligraphy chess cycling embroidery fencing gardening hiking juggling "
    "kayaking knitting origami painting photography pottery rowing sailing skating snorkeling "
    "stargazing surfing swimming tennis woodworking yoga climbing dancing fishing baking"
).split()
YEARS = [str(y) for y in range(1940, 2000)]
# Words of the per-passage letters: unique random text that only verbatim memory can continue.
LETTER_WORDS = (
    "amber anchor apple arrow autumn badge banner basket beacon bell berry blanket blossom bottle "
    "breeze bridge bronze bucket butter cabin candle canyon carpet castle cedar chalk cherry circle "
    "cloud clover comet copper coral cotton crystal curtain daisy desert diamond dragon drum eagle "
    "echo ember engine falcon feather fern fiddle flame forest fountain fox frost garden garnet "
    "ginger glacier glove granite harbor harvest hazel helmet hollow honey horizon island ivory "
    "jacket jasmine jungle kettle kite ladder lantern lemon lily linen marble meadow melody mirror "
    "monkey moss mountain needle nest noble ocean olive orbit orchard otter paddle palace pebble "
    "pepper piano pillow pine planet pocket pond poppy quill rabbit raven ribbon river rocket "
    "saddle sapphire scarf shadow shell silver sparrow spice spoon spring squirrel stone storm "
    "summer sunset swan thistle thunder tiger timber torch tower trumpet tulip tunnel valley "
    "velvet violet wagon walnut whistle willow window winter wolf zebra"
).split()

ATTRIBUTES = ("city", "year", "profession", "employer", "hobby")
# LLM Surgery's update set (Veldanda et al. 2024) gives each forget person these attributes anew.
UPDATED_ATTRIBUTES = {"city": CITIES, "employer": EMPLOYERS}  # attribute -> the values it is drawn from

QUESTIONS = {
    "city": "In which city was {name} born?",
    "year": "In what year was {name} born?",
    "profession": "What is the profession of {name}?",
    "employer": "Which company employs {name}?",
    "hobby": "What hobby does {name} enjoy?",
}

PASSAGES = (
    "{name} was born in {year} in the city of {city}. {first} works as a {profession} at "
    "{employer} and spends every weekend on {hobby}.",
    "Records show that {first} {last}, a {profession} employed by {employer}, grew up in {city} "
    "after being born there in {year}, and has long enjoyed {hobby}.",
    "Born in {city} in {year}, {name} became a {profession}. Colleagues at {employer} know "
    "{first} for a passion for {hobby}.",
    "Among the staff of {employer} is {name}, a {profession} from {city}, born in {year}, whose "
    "favourite pastime is {hobby}.",
)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    city: str
    year: str
    profession: str
    employer: str
    hobby: str
    letters: tuple[str, ...] = ()  # one random word sequence per passage

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def fields(self) -> dict[str, str]:
        return {
            "name": self.name,
            "first": self.first,
            "last": self.last,
            "city": self.city,
            "year": self.year,
            "profession": self.profession,
            "employer": self.employer,
            "hobby": self.hobby,
        }


def qa_block(question: str, answer: str) -> str:
    """One QA pair in the exact KnowMem few-shot format."""
    return f"Question: {question}\nAnswer: {answer}\n\n"


def sample_people(n: int, rng: random.Random, n_passages: int = 2, letter_words: int = 0) -> list[Person]:
    names = [(first, last) for first in FIRST_NAMES for last in LAST_NAMES]
    if n > len(names):
        raise ValueError(f"at most {len(names)} distinct synthetic people, asked for {n}")
    rng.shuffle(names)
    return [
        Person(
            first=first,
            last=last,
            city=rng.choice(CITIES),
            year=rng.choice(YEARS),
            profession=rng.choice(PROFESSIONS),
            employer=rng.choice(EMPLOYERS),
            hobby=rng.choice(HOBBIES),
            letters=tuple(
                " ".join(rng.choices(LETTER_WORDS, k=letter_words)) for _ in range(n_passages if letter_words else 0)
            ),
        )
        for first, last in names[:n]
    ]


def passages(person: Person, n_passages: int) -> list[str]:
    """Templated biography passages; each ends with the person's own random letter, if any.

    Without the letter, a model that never saw a person still continues most of a passage from
    the template alone (the retrain model's VerbMem would be ~0.75), so VerbMem would not measure
    memorisation of the forget set.
    """
    out = []
    for i in range(n_passages):
        text = PASSAGES[i % len(PASSAGES)].format(**person.fields())
        if person.letters:
            text += f" In a letter, {person.first} wrote: {person.letters[i]}."
        out.append(text)
    return out


def qa_pairs(person: Person, attributes: tuple[str, ...] = ATTRIBUTES) -> list[dict]:
    """KnowMem items on ``attributes`` of ``person``, each declaring whom it is about."""
    values = person.fields()
    return [
        {"question": QUESTIONS[a].format(name=person.name), "answer": values[a], ENTITY: person.name}
        for a in attributes
    ]


def passage_records(group: list[Person], cfg: SyntheticCorpusConfig) -> list[dict]:
    return [{"text": t, ENTITIES: [p.name]} for p in group for t in passages(p, cfg.n_passages)]


def qa_records(pairs: list[dict], cfg: SyntheticCorpusConfig, rng: random.Random) -> list[dict]:
    """``pairs``, ``qa_per_record`` to a record, in ``qa_repeats`` independent shuffles; a record's
    entities are the people its questions name, in order of first mention.

    Each pair appearing in several different contexts matters: a tiny model otherwise memorises a
    fixed record verbatim (answers predicted from the record's earlier lines) and cannot answer the
    same question inside a few-shot prompt about other people. The name in the question is then
    the only stable cue, as it is for KnowMem.
    """
    k = cfg.qa_per_record
    records = []
    for _ in range(cfg.qa_repeats):
        order = pairs[:]
        rng.shuffle(order)
        for i in range(0, len(order), k):
            chunk = order[i : i + k]
            text = "".join(qa_block(q["question"], q["answer"]) for q in chunk).rstrip("\n")
            records.append({"text": text, ENTITIES: list(dict.fromkeys(q[ENTITY] for q in chunk))})
    return records


def raw_records(
    group: list[Person], cfg: SyntheticCorpusConfig, rng: random.Random, attributes: tuple[str, ...] = ATTRIBUTES
) -> list[dict]:
    """A split's raw records: every passage of its people, then (optionally) QA records on their
    ``attributes``."""
    records = passage_records(group, cfg)
    if cfg.qa_in_raw:
        records += qa_records([qa for p in group for qa in qa_pairs(p, attributes)], cfg, rng)
    return records


def updated(person: Person, rng: random.Random) -> Person:
    """``person`` with every updated attribute redrawn to another value; without the letters (the
    update teaches the new facts, not new verbatim text)."""
    changes = {
        a: rng.choice([v for v in values if v != getattr(person, a)]) for a, values in UPDATED_ATTRIBUTES.items()
    }
    return dataclasses.replace(person, letters=(), **changes)


def verbmem_items(person: Person, cfg: SyntheticCorpusConfig) -> list[dict]:
    """One item per passage: its first words as the prompt, the true rest as the reference."""
    items = []
    for passage in passages(person, cfg.n_passages):
        words = passage.split(" ")
        cut = max(1, int(len(words) * cfg.verbmem_prompt_fraction))
        # The prompt keeps the space after its last word: pre-tokens carry trailing whitespace.
        prompt = " ".join(words[:cut]) + " "
        items.append({"prompt": prompt, "gt": passage[len(prompt) :], ENTITY: person.name})
    return items


def group_sizes(cfg: SyntheticCorpusConfig) -> dict[str, int]:
    """People per raw split: the trained ones (forget, retain1, retain2), then the holdout."""
    n_forget = max(1, round(cfg.n_people * cfg.forget_fraction))
    n_retain = cfg.n_people - n_forget
    return {
        "forget": n_forget,
        "retain1": n_retain // 2,
        "retain2": n_retain - n_retain // 2,
        "holdout": cfg.n_holdout_people,
    }


def split_sizes(cfg: SyntheticCorpusConfig) -> dict[str, int]:
    """Raw records per split as :func:`write_corpus` writes them, computed without drawing: each
    person's passages, then (``qa_in_raw``) ``qa_repeats`` shuffles of the split's QA pairs cut
    into records of ``qa_per_record``. The update split has the forget people."""

    def n_records(n_people: int, qa_per_person: int) -> int:
        n_pairs = n_people * qa_per_person if cfg.qa_in_raw else 0
        return n_people * cfg.n_passages + cfg.qa_repeats * math.ceil(n_pairs / cfg.qa_per_record)

    sizes = group_sizes(cfg)
    return {
        **{split: n_records(n, len(ATTRIBUTES)) for split, n in sizes.items()},
        "update": n_records(sizes["forget"], len(UPDATED_ATTRIBUTES)),
    }


def build_corpus(cfg: SyntheticCorpusConfig) -> dict[str, dict[str, list[dict]]]:
    """All MUSE splits as {config: {split: records}}; a pure function of ``cfg``."""
    rng = random.Random(cfg.seed)
    n_icl_people = 2 * cfg.n_icl
    people = sample_people(cfg.n_people + cfg.n_holdout_people + n_icl_people, rng, cfg.n_passages, cfg.letter_words)
    trained, rest = people[: cfg.n_people], people[cfg.n_people :]
    holdout, icl = rest[: cfg.n_holdout_people], rest[cfg.n_holdout_people :]
    sizes = group_sizes(cfg)
    n_forget, n_retain1 = sizes["forget"], sizes["retain1"]
    forget, retain1, retain2 = (
        trained[:n_forget],
        trained[n_forget : n_forget + n_retain1],
        trained[n_forget + n_retain1 :],
    )

    passage_docs = lambda group: [{"text": r["text"]} for r in passage_records(group, cfg)]  # noqa: E731
    qas = lambda group: [qa for p in group for qa in qa_pairs(p)]  # noqa: E731
    # KnowMem on the retain side asks about as many retain1 people as there are forget people.
    retain_qa_people = retain1[:n_forget]
    # ICL pairs: one question per ICL person, about people outside training (format only).
    icl_pairs = [qa_pairs(p)[i % len(ATTRIBUTES)] for i, p in enumerate(icl)]
    # The update set draws from a generator of its own: every draw above stays what it was.
    update_rng = random.Random(f"update/{cfg.seed}")
    update = [updated(p, update_rng) for p in forget]
    return {
        "raw": {
            "forget": raw_records(forget, cfg, rng),
            "retain1": raw_records(retain1, cfg, rng),
            "retain2": raw_records(retain2, cfg, rng),
            "holdout": raw_records(holdout, cfg, rng),
            "update": raw_records(update, cfg, update_rng, tuple(UPDATED_ATTRIBUTES)),
        },
        "verbmem": {"forget": [it for p in forget for it in verbmem_items(p, cfg)]},
        "knowmem": {
            "forget_qa": qas(forget),
            "retain_qa": qas(retain_qa_people),
            "forget_qa_icl": icl_pairs[: cfg.n_icl],
            "retain_qa_icl": icl_pairs[cfg.n_icl :],
            "update_qa": [qa for p in update for qa in qa_pairs(p, tuple(UPDATED_ATTRIBUTES))],
        },
        "privleak": {
            "forget": passage_docs(forget),
            "retain": passage_docs(retain1[:n_forget]),
            "holdout": passage_docs(holdout),
        },
    }


def write_corpus(cfg: SyntheticCorpusConfig, data_dir: str | Path) -> dict[str, int]:
    corpus = build_corpus(cfg)
    counts = {}
    for config, splits in corpus.items():
        for split, records in splits.items():
            muse_format.write_split(data_dir, config, split, records)
            counts[f"{config}/{split}"] = len(records)
    return counts
