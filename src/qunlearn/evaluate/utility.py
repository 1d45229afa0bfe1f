"""The paper's utility scores (Zhang et al. 2025, from RWKU): Gen (MMLU subset), Tru (TruthfulQA
MC1/MC2), Fac (TriviaQA EM/F1), Flu (n-gram entropy of instruction-following outputs), on the
subsets shipped in ``qunlearn/data/utility_rwku`` (PROVENANCE.md there).

A metric group a dataset switches on (``datasets.<n>.utility: {enabled: true, chat_template: ...}``,
settings :class:`UtilitySettings`); off, nothing here runs and no column appears. Every prompt is
one user message wrapped in the chat template (``llama2``: transformers' former class default for
Llama tokenizers, which the release relied on, ``[INST] {message.strip()} [/INST]`` after BOS;
``none``: the message as is; ``auto``: llama2 for a Llama tokenizer, none otherwise); the template
used is recorded in the eval JSON (``utility.chat_template``). docs/science.md ("Utility metrics")
gives each definition and where ours departs from the release (the word tokenizer).

This top level is torch-free (the specs); the computations import torch lazily.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..config import ConfigError
from ..plugins import METRICS, MetricSpec

CHAT_TEMPLATES = ("auto", "llama2", "none")
LETTERS = ("A", "B", "C", "D")
FAC_MAX_NEW_TOKENS = 30
FLU_MAX_NEW_TOKENS = 256
ENTROPY_NS, ENTROPY_WEIGHTS = (2, 3), (2 / 3, 4 / 3)
WORD_TOKENIZER = "nltk.NLTKWordTokenizer on regex sentences (word_tokenize without punkt)"


@dataclass
class UtilitySettings:
    """``datasets.<n>.utility``: the paper's utility scores on that dataset's evaluations."""

    enabled: bool = False
    chat_template: str = "auto"  # auto | llama2 | none (recorded in the eval JSON)
    max_items: int | None = None  # the first N items of each subset (smoke tests); null = all

    def validate(self, where: str) -> None:
        if self.chat_template not in CHAT_TEMPLATES:
            raise ConfigError(
                f"{where}.chat_template: {self.chat_template!r} unknown; use one of {', '.join(CHAT_TEMPLATES)}"
            )
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"{where}.max_items: must be >= 1 or null, got {self.max_items}")


def _spec(name: str, column: str, summary: str, order: int, impl: str, scale: float = 100.0) -> MetricSpec:
    return METRICS.register(
        MetricSpec(
            name=name,
            settings=UtilitySettings,
            impl=f"qunlearn.evaluate.utility:{impl}",
            summary=summary,
            source="Zhang et al. 2025 (from RWKU, Jin et al. 2024)",
            key=name,
            column=column,
            scale=scale,
            order=order,
            enabled_by="utility",
        )
    )


GEN = _spec("util_gen", "U_Gen_MMLU", "Gen: MMLU-subset accuracy, next-token letter choice (171 items)", 5, "gen")
TRU_MC1 = _spec("util_tru_mc1", "U_Tru_MC1", "Tru: TruthfulQA MC1, the true answer scores highest", 6, "tru_mc1")
TRU_MC2 = _spec("util_tru_mc2", "U_Tru_MC2", "Tru: TruthfulQA MC2, probability mass of true answers", 7, "tru_mc2")
FAC_EM = _spec("util_fac_em", "U_Fac_EM", "Fac: TriviaQA exact match, greedy 30 tokens, best alias", 8, "fac_em")
FAC_F1 = _spec("util_fac_f1", "U_Fac_F1", "Fac: TriviaQA token F1, best alias", 9, "fac_f1")
FLU = _spec("util_flu", "U_Flu_Entropy", "Flu: weighted 2/3-gram entropy (bits) of 256-token outputs", 10, "flu", 1.0)


# ---- data and prompts (pure) -------------------------------------------------------------------------
@cache
def subset(name: str):
    """One shipped file (``retain_mmlu``, ``truthful``, ``triviaqa``, ``fluency``, ``prompts``)."""
    text = resources.files("qunlearn.data").joinpath("utility_rwku", f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def resolve_template(chat_template: str, tokenizer) -> str:
    if chat_template == "auto":
        return "llama2" if "llama" in type(tokenizer).__name__.lower() else "none"
    return chat_template


def wrap(message: str, template: str) -> str:
    """One user message in the chat template, generation prompt included; the tokenizer adds BOS."""
    if template == "llama2":
        return f"[INST] {message.strip()} [/INST]"
    if template == "none":
        return message
    raise ValueError(f"chat template {template!r} unknown; use one of {', '.join(CHAT_TEMPLATES)}")


def _mmlu_block(question: str, choices: list[str]) -> str:
    return f"Question: {question}\n" + "".join(f"{letter}. {c}\n" for letter, c in zip(LETTERS, choices))


def gen_prompt(item: dict, template: str) -> str:
    task = item["task"].replace("_", " ")
    shots = "".join(
        _mmlu_block(ex["question"], ex["choices"]) + f"Answer: {LETTERS[int(ex['answer'])]}\n\n"
        for ex in item["examples"]
    )
    message = (
        f"The following are multiple choice questions (with answers) about {task}.\n\n{shots}"
        "Please following the previous examples and answer the given question.\n"
        + _mmlu_block(item["question"], item["choices"])
    )
    return wrap(message, template) + "Answer:"


def tru_prompt(item: dict, template: str) -> str:
    text = wrap(subset("prompts")["truthfulqa_qa_primer"] + "\n\nQ: " + item["question"], template)
    return text + ("A:" if text[-1:] in (" ", "\n") else " A:")


def fac_prompt(item: dict, template: str) -> str:
    return wrap(subset("prompts")["triviaqa_few_shot_prefix"] + f"Q: {item['question']}\n", template) + "A:"


def flu_prompt(item: dict, template: str) -> str:
    return wrap(f"Instruction: {item['instruction']}\n", template)


# ---- scores (pure) -----------------------------------------------------------------------------------
def mc1(scores: list[float], labels: list[int]) -> float:
    """1 if the first true choice scores above every false one."""
    best_true = scores[labels.index(1)]
    return float(all(best_true > s for s, lab in zip(scores, labels) if lab == 0))


def mc2(scores: list[float], labels: list[int]) -> float:
    """The probability mass of the true choices: exp(scores) normalised over all choices."""
    top = max(scores)
    p = [math.exp(s - top) for s in scores]
    return sum(q for q, lab in zip(p, labels) if lab == 1) / sum(p)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (SQuAD's rule)."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def token_f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_alias(prediction: str, aliases: list[str]) -> tuple[float, float]:
    """(EM, F1), each the best over the aliases."""
    return max(exact_match(prediction, a) for a in aliases), max(token_f1(prediction, a) for a in aliases)


def word_tokenize(text: str) -> list[str]:
    """NLTK's word tokenizer without its punkt download: sentences split after . ! ? followed by
    whitespace (punkt also knows abbreviations such as "Dr."), then NLTKWordTokenizer, which is what
    nltk.word_tokenize runs on each sentence."""
    from nltk.tokenize import NLTKWordTokenizer

    tok = NLTKWordTokenizer()
    return [w for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence for w in tok.tokenize(sentence)]


def ngram_entropy(text: str) -> float:
    """The mean over n = 2, 3 of weight_n x the Shannon entropy (bits) of the n-gram frequency
    distribution of the words (weights 2/3, 4/3; ROME's and RWKU's n_gram_entropy). A text with no
    n-grams of some n contributes 0 for it."""
    words = word_tokenize(text)
    terms = []
    for n, w in zip(ENTROPY_NS, ENTROPY_WEIGHTS):
        counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(counts.values())
        h = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        terms.append(w * h)
    return sum(terms) / len(terms)


# ---- model computations (torch) ----------------------------------------------------------------------
def _items(name: str, settings: UtilitySettings) -> list[dict]:
    data = subset(name)
    return data if settings.max_items is None else data[: settings.max_items]


def _letter_ids(tokenizer) -> list[int]:
    return [tokenizer(f" {letter}", add_special_tokens=False)["input_ids"][-1] for letter in LETTERS]


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values))


def compute_gen(model, tokenizer, settings: UtilitySettings, progress: bool = False) -> dict:
    import torch

    template = resolve_template(settings.chat_template, tokenizer)
    letter_ids = _letter_ids(tokenizer)
    device = next(model.parameters()).device
    items = []
    with torch.no_grad():
        for item in _items("retain_mmlu", settings):
            ids = tokenizer(gen_prompt(item, template), return_tensors="pt")["input_ids"].to(device)
            logits = model(input_ids=ids).logits[0, -1].float()
            letter_logits = [float(logits[i]) for i in letter_ids]
            pred = max(range(len(LETTERS)), key=lambda k: letter_logits[k])
            answer = int(item["answer"])
            items.append({"pred": LETTERS[pred], "answer": LETTERS[answer], "score": float(pred == answer)})
    return {"score": _mean(it["score"] for it in items), "items": items}


def choice_logprobs(model, tokenizer, prompt: str, choices: list[str]) -> list[float]:
    """The summed log-probability of each choice's tokens after ``prompt`` (prompt + " " + choice
    tokenized as one text; the choice's tokens are those past the prompt's)."""
    import torch

    device = next(model.parameters()).device
    n_prompt = len(tokenizer(prompt)["input_ids"])
    out = []
    with torch.no_grad():
        for choice in choices:
            ids = tokenizer(f"{prompt} {choice}", return_tensors="pt")["input_ids"].to(device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
            target = ids[0, 1:]
            lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)[n_prompt - 1 :]
            out.append(float(lp.sum()))
    return out


def compute_tru(model, tokenizer, settings: UtilitySettings, progress: bool = False) -> dict:
    template = resolve_template(settings.chat_template, tokenizer)
    items = []
    for item in _items("truthful", settings):
        prompt = tru_prompt(item, template)
        row = {"question": item["question"]}
        for key in ("mc1", "mc2"):
            t = item[f"{key}_targets"]
            scores = choice_logprobs(model, tokenizer, prompt, t["choices"])
            row[key] = (mc1 if key == "mc1" else mc2)(scores, list(t["labels"]))
        items.append(row)
    return {"mc1": _mean(it["mc1"] for it in items), "mc2": _mean(it["mc2"] for it in items), "items": items}


def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg, progress: bool) -> list[str]:
    from .generation import batching_for, greedy_generate

    return greedy_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens,
        cfg.batch_size,
        progress=progress,
        batching=batching_for(model, cfg.half_precision_generation),
    )


def compute_fac(model, tokenizer, settings: UtilitySettings, cfg, progress: bool = False) -> dict:
    template = resolve_template(settings.chat_template, tokenizer)
    data = _items("triviaqa", settings)
    outs = _generate(model, tokenizer, [fac_prompt(it, template) for it in data], FAC_MAX_NEW_TOKENS, cfg, progress)
    items = []
    for it, out in zip(data, outs):
        em, f1 = best_alias(out, list(it["answers"]))
        items.append({"question": it["question"], "output": out, "em": em, "f1": f1})
    return {"em": _mean(it["em"] for it in items), "f1": _mean(it["f1"] for it in items), "items": items}


def compute_flu(model, tokenizer, settings: UtilitySettings, cfg, progress: bool = False) -> dict:
    template = resolve_template(settings.chat_template, tokenizer)
    data = _items("fluency", settings)
    outs = _generate(model, tokenizer, [flu_prompt(it, template) for it in data], FLU_MAX_NEW_TOKENS, cfg, progress)
    items = [{"output": out, "score": ngram_entropy(out)} for out in outs]
    return {"score": _mean(it["score"] for it in items), "items": items}


# ---- the metric plugins (MetricSpec.impl): one computation per model, shared by its columns ---------
_CACHE: dict = {}


def _shared(kind: str, model, tokenizer, settings, cfg, progress) -> dict:
    """Tru and Fac give two columns each from one computation: computed once per model and settings."""
    key = (kind, id(model), repr(settings))
    if key not in _CACHE:
        _CACHE.clear()  # one model at a time (an evaluate job loads one)
        if kind == "tru":
            _CACHE[key] = compute_tru(model, tokenizer, settings, progress=progress)
        else:
            _CACHE[key] = compute_fac(model, tokenizer, settings, cfg, progress=progress)
    return _CACHE[key]


def gen(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    return compute_gen(model, tokenizer, settings, progress)


def tru_mc1(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    r = _shared("tru", model, tokenizer, settings, cfg, progress)
    return {"score": r["mc1"], "items": r["items"]}


def tru_mc2(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    r = _shared("tru", model, tokenizer, settings, cfg, progress)
    return {"score": r["mc2"], "items": [it["mc2"] for it in r["items"]]}


def fac_em(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    r = _shared("fac", model, tokenizer, settings, cfg, progress)
    return {"score": r["em"], "items": r["items"]}


def fac_f1(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    r = _shared("fac", model, tokenizer, settings, cfg, progress)
    return {"score": r["f1"], "items": [it["f1"] for it in r["items"]]}


def flu(model, tokenizer, data_dir, cfg, progress=False, settings=None) -> dict:
    return compute_flu(model, tokenizer, settings, cfg, progress)


def record(settings: UtilitySettings, tokenizer) -> dict:
    """What the eval JSON records of the group: its settings, the template used, the word tokenizer."""
    from ..config import to_dict

    return {
        **to_dict(settings),
        "chat_template_used": resolve_template(settings.chat_template, tokenizer),
        "word_tokenizer": WORD_TOKENIZER,
    }
