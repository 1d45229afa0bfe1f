"""Small real runs of the training and unlearning loops on a micro Llama (seconds)."""

from dataclasses import dataclass

import pytest
import torch

from qunlearn import runtime
from qunlearn.batching import collate, encode_documents
from qunlearn.config import ConfigError, EvalConfig, ModelConfig, SyntheticCorpusConfig, TrainConfig, UnlearnConfig
from qunlearn.data import muse_format
from qunlearn.data.synthetic import write_corpus
from qunlearn.data.tokenizer import train_tokenizer
from qunlearn.models import build_tiny_llama
from qunlearn.plugins import MethodSettings, MethodSpec
from qunlearn.registries import METHODS
from qunlearn.train import memorisation_checks, train_until_memorised
from qunlearn.unlearn.base import UnlearningMethod
from qunlearn.unlearn.loop import unlearn
from qunlearn.unlearn.losses import token_nll

MICRO = ModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=128)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    write_corpus(SyntheticCorpusConfig(n_people=20, n_holdout_people=4, n_icl=1, qa_repeats=1, letter_words=4), d)
    texts = [t for s in ("forget", "retain1", "retain2") for t in muse_format.read_texts(d, "raw", s)]
    tok = train_tokenizer(texts, 600, d / "tokenizer")
    return d, tok


def nll(model, tok, texts):
    with torch.no_grad():
        return token_nll(
            model(
                **{
                    k: v
                    for k, v in collate(encode_documents(tok, texts, 128), tok.pad_token_id).items()
                    if k != "labels"
                }
            ).logits,
            collate(encode_documents(tok, texts, 128), tok.pad_token_id)["labels"],
        ).item()


def test_training_lowers_loss_and_reports_checks(corpus):
    d, tok = corpus
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    texts = muse_format.read_texts(d, "raw", "retain1")
    before = nll(model, tok, texts)
    qa = (muse_format.read_split(d, "knowmem", "retain_qa"), muse_format.read_split(d, "knowmem", "retain_qa_icl"))
    cfg = TrainConfig(lr=3e-3, batch_size=8, warmup_steps=2, max_epochs=4, check_every=2, memorised_threshold=1.0)
    ecfg = EvalConfig(knowmem_max_new_tokens=4, verbmem_max_new_tokens=8)
    checks = memorisation_checks(tok, {"retain_qa": qa}, None, cfg, ecfg)
    hist = train_until_memorised(model, tok, texts, checks, cfg, seed=0, max_length=128, progress=False)
    assert nll(model, tok, texts) < before - 0.5
    assert [c["epoch"] for c in hist["checks"]] == [2, 4] and "knowmem_retain_qa" in hist["checks"][0]
    assert hist["epochs"] == 4  # threshold 1.0 not reached: ran to max_epochs


def test_training_checks_and_stops_only_from_min_epochs_on(corpus):
    d, tok = corpus
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    readings = iter([0.90, 0.97, 0.99])  # read at epochs 4, 5, 6 only
    cfg = TrainConfig(lr=3e-3, batch_size=8, warmup_steps=2, max_epochs=8, check_every=1, min_epochs=4)
    texts = muse_format.read_texts(d, "raw", "retain1")[:8]
    hist = train_until_memorised(
        model, tok, texts, {"k": (lambda m: next(readings), 0.95)}, cfg, seed=0, max_length=128, progress=False
    )
    assert [(c["epoch"], c["k"]) for c in hist["checks"]] == [(4, 0.90), (5, 0.97)]
    assert hist["memorised_at_epoch"] == 5 and hist["epochs"] == 5


@pytest.mark.parametrize("method", ["ga", "ga_gdr", "ga_klr", "npo", "npo_gdr", "npo_klr"])
def test_unlearning_raises_forget_loss(corpus, method):
    d, tok = corpus
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    train_until_memorised(
        model,
        tok,
        forget + retain,
        {},
        TrainConfig(lr=3e-3, batch_size=8, warmup_steps=2, max_epochs=3, check_every=100),
        seed=0,
        max_length=128,
        progress=False,
    )
    before = nll(model, tok, forget)
    settings = {"beta": 0.1} if METHODS.get(method).family == "npo" else {}
    hist = unlearn(
        model,
        tok,
        forget,
        retain,
        UnlearnConfig(method=method, lr=1e-3, epochs=3, batch_size=8, settings=settings),
        seed=0,
        max_length=128,
        progress=False,
    )
    assert hist["steps"] == 3 * -(-hist["n_forget_chunks"] // 8)
    assert nll(model, tok, forget) > before
    assert (hist["n_retain_chunks"] > 0) == method.endswith(("gdr", "klr"))


@pytest.mark.parametrize(
    "method,settings,match",
    [
        ("npo_gdr", {"beta": 0.0}, r"unlearn.methods.npo_gdr.beta: must be > 0"),
        ("ga_gdr", {"beta": 0.1}, r"unlearn.methods.ga_gdr: unknown key\(s\) 'beta'"),
        ("ga_gdr_sure", {"level": "neuron"}, r"unlearn.methods.ga_gdr_sure.level: 'neuron' unknown"),
        ("sure_magic", {}, r"unlearn.method: unknown unlearning method 'sure_magic'"),
    ],
)
def test_the_loop_validates_the_method_and_its_settings(method, settings, match):
    with pytest.raises(ConfigError, match=match):
        unlearn(None, None, [], [], UnlearnConfig(method=method, settings=settings), seed=0, max_length=128)


# A method the loop has never heard of: it compares the last hidden state with the frozen
# reference's, shifted by a target vector made in setup() (RMU-like), and trains only the norms.
TOY_RUNS: list[dict] = []


@dataclass
class ToySettings(MethodSettings):
    shift: float = 1.0


class ToyHidden(UnlearningMethod):
    def setup(self, model, reference, tokenizer):
        self.target = torch.full((model.config.hidden_size,), self.settings.shift)
        self.run = {"reference_layers": set(), "retain_batches": 0}
        TOY_RUNS.append(self.run)

    def trainable_parameters(self, model):
        for name, p in model.named_parameters():
            p.requires_grad_("norm" in name)
        return super().trainable_parameters(model)

    def losses(self, model, reference, forget_batch, retain_batch):
        ids, mask = forget_batch["input_ids"], forget_batch["attention_mask"]
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        self.run["reference_layers"].add(len(ref.hidden_states))
        self.run["retain_batches"] += retain_batch is not None
        loss = (out.hidden_states[-1] - ref.hidden_states[-1] - self.target).pow(2).mean()
        return {"forget": loss, "loss": loss}


def test_a_method_registered_elsewhere_runs_through_the_loop_unchanged(corpus, monkeypatch):
    d, tok = corpus
    spec = MethodSpec(
        name="toy_hidden",
        settings=ToySettings,
        impl=f"{__name__}:ToyHidden",
        summary="test only",
        reference_outputs=("hidden_states",),
        trains="norms",
    )
    monkeypatch.setitem(METHODS._specs, spec.name, spec)
    runtime.seed_everything(0, 1)
    model = build_tiny_llama(MICRO, tok, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    forget = muse_format.read_texts(d, "raw", "forget")
    retain = muse_format.read_texts(d, "raw", "retain1")
    TOY_RUNS.clear()
    hist = unlearn(
        model,
        tok,
        forget,
        retain,
        UnlearnConfig(method="toy_hidden", lr=1e-2, epochs=3, batch_size=8, settings={"shift": 0.5}),
        seed=0,
        max_length=128,
        progress=False,
    )
    (run,) = TOY_RUNS
    assert run["reference_layers"] == {MICRO.num_layers + 1} and run["retain_batches"] == 0
    assert hist["n_retain_chunks"] == 0 and hist["epochs"][-1]["forget"] < hist["epochs"][0]["forget"]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all("norm" in n for n in moved)


def test_offloaded_reference_returns_hidden_states_on_the_models_device(corpus):
    from qunlearn.memory import OffloadedReference

    _, tok = corpus
    model = build_tiny_llama(MICRO, tok, 0).eval()
    ids = torch.randint(3, 50, (2, 8))
    ref = OffloadedReference(model, torch.device("cpu"), torch.device("cpu"))
    out, direct = ref(input_ids=ids, output_hidden_states=True), model(input_ids=ids, output_hidden_states=True)
    assert torch.equal(out.logits, direct.logits)
    assert len(out.hidden_states) == MICRO.num_layers + 1
    assert all(torch.equal(a, b) for a, b in zip(out.hidden_states, direct.hidden_states))
    assert ref(input_ids=ids).hidden_states is None


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with runtime.atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert not final.exists() and not list(tmp_path.iterdir())
    with runtime.atomic_dir(final) as tmp:
        (tmp / "done").write_text("ok")
    assert (final / "done").read_text() == "ok"


def test_load_model_requires_safetensors(tmp_path, corpus):
    from qunlearn.models import load_model, save_model

    with pytest.raises(FileNotFoundError, match="model directory missing"):
        load_model(tmp_path / "nope")
    d, tok = corpus
    save_model(build_tiny_llama(MICRO, tok, 0), tok, tmp_path / "m")
    assert load_model(tmp_path / "m", device=torch.device("cpu")).config.hidden_size == 32
    for f in (tmp_path / "m").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_model(tmp_path / "m")
