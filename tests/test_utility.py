"""The paper's utility scores (Gen, Tru, Fac, Flu; issue 14 part 2): the prompts, each score against
hand-computed values on stub models with fixed logits or fixed outputs, the shipped subsets, and the
group switched on per dataset (off on the default)."""

import hashlib
import math
from importlib import resources
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT

from qunlearn.config import ConfigError, EvalConfig, ModelConfig, from_dict
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.evaluate import utility as u
from qunlearn.evaluate.runner import evaluate_all
from qunlearn.experiment import Experiment
from qunlearn.models import build_tiny_llama

SHIPPED = {  # PROVENANCE.md: copied unchanged from the paper's release
    "retain_mmlu": "42bdb1b1b840284b7b5f7684b61907e39dc151995ed0fa346e677cb3844e3465",
    "truthful": "57e65c346a5b62c3eecf3bd82e48dcd41c2b6ed24b11966425243a3e8df9a98c",
    "triviaqa": "9e0bee872db3ee11b30d6bdf4f49ec6802ca7102af9f918eadab349fcf98bf50",
    "fluency": "1573e4091892b550506b8f46ecd73949e0175a2e832f3805d31ae5682440208d",
    "prompts": "1342fca43ad9acbd249a14de8ab8679570360bb6e0b6324115411689de9e1dba",
}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    texts = [u.gen_prompt(it, "none") for it in u.subset("retain_mmlu")[:5]]
    texts += [u.subset("prompts")["truthfulqa_qa_primer"], u.subset("prompts")["triviaqa_few_shot_prefix"]]
    texts += [c for it in u.subset("truthful")[:3] for c in it["mc2_targets"]["choices"]]
    return train_tokenizer(texts, 600, tmp_path_factory.mktemp("tok"))


class FixedLogits(torch.nn.Module):
    """Every position's next-token logits = ``logits`` (a vector over the vocabulary)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32), requires_grad=False)

    def forward(self, input_ids, **_):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_shipped_subsets_are_the_releases_unchanged():
    for name, digest in SHIPPED.items():
        data = resources.files("qunlearn.data").joinpath("utility_rwku", f"{name}.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert [len(u.subset(n)) for n in ("retain_mmlu", "truthful", "triviaqa", "fluency")] == [171, 50, 100, 50]


def test_prompts_follow_the_spec():
    item = {
        "task": "high_school_physics",
        "question": "Q?",
        "choices": ["w", "x", "y", "z"],
        "answer": 1,
        "examples": [{"question": "E?", "choices": ["a", "b", "c", "d"], "answer": 3}],
    }
    assert u.gen_prompt(item, "llama2") == (
        "[INST] The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Question: E?\nA. a\nB. b\nC. c\nD. d\nAnswer: D\n\n"
        "Please following the previous examples and answer the given question.\n"
        "Question: Q?\nA. w\nB. x\nC. y\nD. z [/INST]Answer:"
    )
    primer = u.subset("prompts")["truthfulqa_qa_primer"]
    assert u.tru_prompt({"question": "Why?"}, "none") == primer + "\n\nQ: Why? A:"
    assert u.tru_prompt({"question": "Why?\n"}, "none").endswith("Q: Why?\nA:")
    assert u.fac_prompt({"question": "Who?"}, "llama2").endswith("Q: Who? [/INST]A:")
    assert u.flu_prompt({"instruction": "Say hi."}, "none") == "Instruction: Say hi.\n"


def test_gen_accuracy_with_fixed_logits(tok):
    """The first five items' answers are C, C, C, B, D: a model always preferring " C" scores 3/5,
    one preferring " B" 1/5."""
    settings = u.UtilitySettings(enabled=True, chat_template="llama2", max_items=5)
    for letter, expected in (("C", 0.6), ("B", 0.2)):
        logits = torch.zeros(len(tok))
        logits[tok(f" {letter}", add_special_tokens=False)["input_ids"][-1]] = 5.0
        r = u.compute_gen(FixedLogits(logits), tok, settings)
        assert r["score"] == pytest.approx(expected)
        assert {it["pred"] for it in r["items"]} == {letter}


def test_tru_mc1_mc2_with_uniform_logits(tok):
    """Uniform logits: every token has log-probability -ln V, so a choice of n tokens scores
    -n ln V; MC1 = [the first true choice has fewer tokens than every false one], MC2 = the share of
    V^-n over the true choices."""
    V = len(tok)
    settings = u.UtilitySettings(enabled=True, chat_template="none", max_items=3)
    r = u.compute_tru(FixedLogits(torch.zeros(V)), tok, settings)
    mc1s, mc2s = [], []
    for item in u.subset("truthful")[:3]:
        prompt = u.tru_prompt(item, "none")
        n_prompt = len(tok(prompt)["input_ids"])

        def n_tokens(c, prompt=prompt, n_prompt=n_prompt):
            return len(tok(f"{prompt} {c}")["input_ids"]) - n_prompt

        t1 = item["mc1_targets"]
        n1 = [n_tokens(c) for c in t1["choices"]]
        first_true = n1[t1["labels"].index(1)]
        mc1s.append(float(all(first_true < n for n, lab in zip(n1, t1["labels"]) if lab == 0)))
        t2 = item["mc2_targets"]
        w = [V ** -(n_tokens(c) - min(n_tokens(x) for x in t2["choices"])) for c in t2["choices"]]
        mc2s.append(sum(x for x, lab in zip(w, t2["labels"]) if lab) / sum(w))
    assert [it["mc1"] for it in r["items"]] == mc1s
    assert [it["mc2"] for it in r["items"]] == pytest.approx(mc2s)
    assert r["mc1"] == pytest.approx(sum(mc1s) / 3) and r["mc2"] == pytest.approx(sum(mc2s) / 3)


def test_mc_scores_by_hand():
    assert u.mc1([-1.0, -2.0, -0.5], [1, 0, 0]) == 0.0 and u.mc1([-1.0, -2.0, -3.0], [1, 0, 0]) == 1.0
    assert u.mc1([-1.0, -1.0], [1, 0]) == 0.0  # a tie is not "above"
    assert u.mc2([math.log(0.2), math.log(0.3), math.log(0.5)], [1, 1, 0]) == pytest.approx(0.5)


def test_fac_em_f1_on_fixed_outputs(monkeypatch):
    """Item 0's aliases include "Estimate", item 1's "John Key", item 2's "Humphrey Bogart"."""
    outputs = [" Estimate.", " John Key is", " Humphrey the actor"]
    monkeypatch.setattr(u, "_generate", lambda model, tok, prompts, n, cfg, progress: outputs[: len(prompts)])
    r = u.compute_fac(None, SimpleNamespace(), u.UtilitySettings(enabled=True, chat_template="none", max_items=3), None)
    # EM: 1, 0, 0. F1: 1; "john key is" vs "john key": P 2/3, R 1 -> 0.8; "humphrey actor" (the
    # article dropped) vs "humphrey bogart": P 1/2, R 1/2 -> 0.5
    assert [it["em"] for it in r["items"]] == [1.0, 0.0, 0.0]
    assert [it["f1"] for it in r["items"]] == pytest.approx([1.0, 0.8, 0.5])
    assert r["em"] == pytest.approx(1 / 3) and r["f1"] == pytest.approx(2.3 / 3)


def test_answer_normalisation():
    assert u.normalize_answer("  The  Eiffel-Tower!  ") == "eiffeltower"
    assert u.exact_match("an apple", "Apple") == 1.0
    assert u.token_f1("new york city", "New York") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_ngram_entropy_by_hand():
    # "a b a b": bigrams ab, ba, ab -> p = 2/3, 1/3; trigrams aba, bab -> 1 bit
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert u.ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert u.ngram_entropy("hello") == 0.0
    # sentence-final periods are their own words, as nltk.word_tokenize makes them
    assert u.word_tokenize("It rains. We stay.") == ["It", "rains", ".", "We", "stay", "."]


def test_flu_on_fixed_outputs(monkeypatch):
    outputs = ["a b a b", "x y z"]
    monkeypatch.setattr(u, "_generate", lambda model, tok, prompts, n, cfg, progress: outputs[: len(prompts)])
    r = u.compute_flu(None, SimpleNamespace(), u.UtilitySettings(enabled=True, chat_template="none", max_items=2), None)
    assert r["score"] == pytest.approx((u.ngram_entropy("a b a b") + (2 / 3 * 1 + 4 / 3 * 0) / 2) / 2)


def test_the_group_runs_only_where_enabled_and_records_the_template(tok, monkeypatch):
    model = build_tiny_llama(
        ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=4096), tok, 0
    ).eval()
    cfg = EvalConfig(batch_size=4)
    settings = u.UtilitySettings(enabled=True, chat_template="none", max_items=2)
    monkey = {"verbmem_f", "knowmem_f", "knowmem_r", "privleak"}
    import qunlearn.registries as reg

    plain = [s for s in reg.METRICS.specs() if s.name not in monkey]
    assert [s.name for s in plain] == [
        "util_gen",
        "util_tru_mc1",
        "util_tru_mc2",
        "util_fac_em",
        "util_fac_f1",
        "util_flu",
    ]
    saved = reg.METRICS._specs
    try:  # only the utility group (the MUSE metrics need a data directory)
        reg.METRICS._specs = {s.name: s for s in plain}
        assert evaluate_all(model, tok, None, cfg, False)["metrics"] == {}
        out = evaluate_all(model, tok, None, cfg, False, {"utility": settings})
    finally:
        reg.METRICS._specs = saved
    assert set(out["metrics"]) == {s.key for s in plain}
    assert out["utility"]["chat_template_used"] == "none" and out["utility"]["max_items"] == 2
    assert 0 <= out["metrics"]["util_gen"] <= 1 and out["metrics"]["util_flu"] >= 0
    assert len(out["items"]["util_fac_em"]) == 2


def test_settings_are_checked_and_muse_configs_enable_the_group(default_config):
    with pytest.raises(ConfigError, match="chat_template"):
        from_dict(u.UtilitySettings, {"chat_template": "chatml"}, "datasets.news.utility")
    exp = Experiment(default_config)
    assert all("utility" not in exp.evaluate_params(ds) for ds in exp.datasets)  # off by default
    for name in ("muse-news", "muse-books"):
        exp = Experiment(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))
        (ds,) = exp.datasets
        assert exp.evaluate_params(ds)["utility"] == {"enabled": True, "chat_template": "llama2", "max_items": None}
