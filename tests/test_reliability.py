"""Reliability of data, checkpoints and outputs (issue 16, items 1 last bullet, 3 files, 4): a split
that lost records is refused, every broken file is named, killed jobs leave no temporary output,
input hashes are content hashes, provenance names the code that ran, outputs get umask modes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from qunlearn import runtime, stages
from qunlearn.data import muse, muse_format

SRC = Path(runtime.__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "muse-news"
TINY_DATA = {
    "source": "synthetic",
    "synthetic": {"n_people": 20, "n_holdout_people": 4, "n_icl": 2, "qa_repeats": 1, "letter_words": 4},
    "tokenizer": {"vocab_size": 300},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "data"
    stages.prepare_data(TINY_DATA, out)
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(src, dst)
    return dst


# -- item 1: records dropped from a data file ------------------------------------------------------


def test_the_data_stage_records_each_split_count_and_hash(data_dir):
    meta = json.loads((data_dir / "meta.json").read_text())
    path = muse_format.split_path(data_dir, "privleak", "holdout")
    lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    rec = meta["splits"]["privleak/holdout"]
    assert rec["records"] == len(lines) >= 2
    assert rec["sha256"] == runtime.hash_path(path)


@pytest.mark.parametrize("config,split", [("privleak", "holdout"), ("raw", "forget"), ("knowmem", "forget_qa")])
def test_a_split_truncated_at_a_line_boundary_is_refused_naming_file_and_counts(data_dir, tmp_path, config, split):
    data = _copy(data_dir, tmp_path)
    path = muse_format.split_path(data, config, split)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    n = len(lines)
    path.write_text("".join(lines[: n // 2]), encoding="utf-8")  # whole records dropped: still valid JSONL
    with pytest.raises(muse_format.DataFormatError) as err:
        muse_format.read_split(data, config, split)
    msg = str(err.value)
    assert str(path) in msg and f"expected {n} records" in msg and f"found {n // 2} records" in msg


def test_a_record_edited_in_place_is_refused_by_its_hash(data_dir, tmp_path):
    data = _copy(data_dir, tmp_path)
    path = muse_format.split_path(data, "knowmem", "forget_qa")
    text = path.read_text(encoding="utf-8")
    first = json.loads(text.splitlines()[0])
    path.write_text(text.replace(first["answer"], first["answer"] + "x", 1), encoding="utf-8")
    with pytest.raises(muse_format.DataFormatError, match="sha256"):
        muse_format.read_split(data, "knowmem", "forget_qa")


# -- item 3: errors name the file ------------------------------------------------------------------


def test_non_utf8_bytes_in_a_split_name_file_and_line(tmp_path):
    path = muse_format.split_path(tmp_path, "raw", "forget")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(muse_format.DataFormatError, match=r"forget\.jsonl:2: not UTF-8"):
        muse_format.read_split(tmp_path, "raw", "forget")


def test_an_empty_muse_split_says_which_and_where_not_download_it(tmp_path):
    local = _copy(FIXTURE, tmp_path)
    (local / "privleak" / "holdout.jsonl").write_text("")
    cfg = muse.MuseConfig(local_dir=str(local), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(muse_format.DataFormatError) as err:
        muse.load_split(cfg, "privleak", "holdout")
    msg = str(err.value)
    assert "privleak/holdout" in msg and "empty" in msg and str(local / "privleak" / "holdout.jsonl") in msg
    assert "huggingface-cli download" not in msg


def _tiny_model_dir(path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(str(path), safe_serialization=True)
    return path


def test_a_truncated_checkpoint_names_its_safetensors_file(tmp_path):
    from qunlearn.models import load_model

    model_dir = _tiny_model_dir(tmp_path / "model")
    weights = model_dir / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(Exception) as err:
        load_model(model_dir)
    assert str(weights) in str(err.value) and "truncated" in str(err.value)


def test_a_truncated_tokenizer_json_is_named(tmp_path):
    from qunlearn.data.tokenizer import load_tokenizer, train_tokenizer

    texts = ["Alice Kettering lives in Paris.", "Bob Smith works in Rome."] * 5
    train_tokenizer(texts, 300, tmp_path / "tok")
    path = tmp_path / "tok" / "tokenizer.json"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(Exception) as err:
        load_tokenizer(tmp_path / "tok")
    assert str(path) in str(err.value)


def test_truncated_selection_and_evaluation_jsons_are_named(tmp_path):
    from qunlearn import selection

    sel = tmp_path / "selection.json"
    sel.write_text('{"method": "ga", "alpha": 0.5, "gr')
    with pytest.raises(Exception) as err:
        selection.selected_alpha(sel)
    assert str(sel) in str(err.value)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"metrics": {"verbmem_f": 0.1, "knowmem_f": 0.1, "knowmem_r": 0.5}}))
    broken = tmp_path / "alpha~2.json"
    broken.write_text(good.read_text()[:20])
    with pytest.raises(Exception) as err:
        selection.select_alpha_stage(
            {"1": str(good), "2": str(broken)}, str(good), [1.0, 2.0], {}, tmp_path / "out.json", "ga"
        )
    assert str(broken) in str(err.value)


def test_a_truncated_evaluation_is_named_by_the_report_frame(tmp_path):
    from qunlearn.config import ReportConfig
    from qunlearn.report.frame import long_metrics

    path = tmp_path / "results/d/eval/target/fp32.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"metrics": {"verbmem_f": 0.')
    with pytest.raises(runtime.InputFileError, match=str(path)):
        long_metrics([str(path)], ReportConfig())


# -- item 4: leaks and provenance ------------------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from qunlearn import runtime
with runtime.atomic_dir(sys.argv[1]) as tmp:
    (Path(tmp) / "weights.bin").write_bytes(b"x" * 1000)
    (Path(sys.argv[2])).write_text(str(tmp))
    time.sleep(600)
"""


def _killed_writer(final: Path, tmp_path: Path) -> Path:
    """A job-like process writing ``final`` through atomic_dir, killed with SIGKILL mid-write."""
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(final), str(ready)], env=env)
    try:
        while not ready.exists():  # waits for the write to start; no timing is measured
            assert proc.poll() is None, "the writer died before writing"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    tmp = Path(ready.read_text())
    assert tmp.is_dir() and tmp.parent == final.parent and not final.exists()
    return tmp


def test_the_next_atomic_write_removes_a_killed_jobs_temporary_dir(tmp_path):
    final = tmp_path / "results" / "d" / "models" / "target"
    stale = _killed_writer(final, tmp_path)
    with runtime.atomic_dir(final) as tmp:
        (Path(tmp) / "weights.bin").write_bytes(b"y")
    assert final.is_dir() and not stale.exists()
    assert [p.name for p in final.parent.iterdir()] == ["target"]


def test_an_atomic_file_write_removes_its_killed_predecessors_temps(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid whose process is gone
    final = tmp_path / "eval" / "fp32.json"
    final.parent.mkdir()
    stale = [
        final.with_name(f".fp32.tmp-{runtime._host()}-{dead.pid}.json"),  # atomic_file's name
        final.with_name(f".fp32.json.tmp-{dead.pid}"),  # the name older runs used
    ]
    for p in stale:
        p.write_text('{"metrics": {"verbmem_f": 0.')
    runtime.write_json_atomic(final, {"metrics": {}})
    assert sorted(p.name for p in final.parent.iterdir()) == ["fp32.json"]


def test_the_workflow_sweep_removes_killed_temps_but_not_live_ones(tmp_path):
    final = tmp_path / "results" / "d" / "models" / "target"
    stale = _killed_writer(final, tmp_path)
    live_dir = final.with_name(f".retrain.tmp-{runtime._host()}-{os.getpid()}")  # this process: alive
    live_dir.mkdir()
    other_host = final.with_name(".x.tmp-another-node-1")  # a cluster node's: cannot be judged here
    other_host.mkdir()
    assert set(runtime.sweep_stale_temps(tmp_path / "results")) == {stale}
    assert live_dir.is_dir() and other_host.is_dir()
    snakefile = (ROOT / "Snakefile").read_text()
    assert "onstart:" in snakefile and "sweep_stale_temps" in snakefile


def test_dvc_never_versions_temporary_outputs():
    import pathspec

    lines = (ROOT / ".dvcignore").read_text().splitlines()
    spec = pathspec.PathSpec.from_lines("gitignore", lines)
    assert spec.match_file("results/d/models/.target.tmp-node1-4242/model.safetensors")
    assert spec.match_file("results/d/eval/target/.fp32.tmp-4242.json")
    assert not spec.match_file("results/d/models/target/model.safetensors")


def test_input_hashes_are_content_hashes_not_of_meta_json(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "meta.json").write_text(json.dumps({"wall_time_s": 1.0}))
    first = runtime.hash_path(d)
    (d / "meta.json").write_text(json.dumps({"wall_time_s": 2.5}))
    assert runtime.hash_path(d) == first
    (d / "model.safetensors").write_bytes(b"weightz")
    assert runtime.hash_path(d) != first
    # a JSON output's own provenance ("meta": wall time, host) is not its content either
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({"metrics": {"a": 1}, "meta": {"wall_time_s": 1.0}}))
    h = runtime.hash_path(ev)
    ev.write_text(json.dumps({"metrics": {"a": 1}, "meta": {"wall_time_s": 9.0}}))
    assert runtime.hash_path(ev) == h


def _git(cwd, *args):
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_provenance_names_the_checkout_that_ran_and_its_uncommitted_changes(tmp_path):
    """One virtualenv, two checkouts: the commit recorded is the imported package's, not the
    current directory's, with a dirty flag and a hash of the diff."""
    checkout = tmp_path / "checkout"
    shutil.copytree(SRC / "qunlearn", checkout / "src" / "qunlearn", ignore=shutil.ignore_patterns("__pycache__"))
    _git(checkout, "init", "-q")
    _git(checkout, "add", ".")
    _git(checkout, "commit", "-qm", "code")
    commit = _git(checkout, "rev-parse", "HEAD")
    elsewhere = tmp_path / "other"  # the working directory: another repository
    elsewhere.mkdir()
    _git(elsewhere, "init", "-q")
    _git(elsewhere, "commit", "-q", "--allow-empty", "-m", "other")
    probe = (
        "import json, time; from qunlearn import runtime; "
        "print(json.dumps(runtime.build_meta('x', {}, None, {}, time.time())))"
    )

    def meta():
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
        ).stdout
        m = json.loads(out)
        return m.get("code", {"git_commit": m.get("git_commit")})

    clean = meta()
    assert clean["git_commit"] == commit and clean.get("dirty") is False
    with open(checkout / "src" / "qunlearn" / "batching.py", "a") as fh:
        fh.write("# an uncommitted change\n")
    dirty = meta()
    assert dirty["git_commit"] == commit and dirty["dirty"] is True and dirty["diff_sha256"]


def test_outputs_get_umask_modes_not_0600(tmp_path):
    import torch
    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        with runtime.atomic_dir(tmp_path / "ckpt") as tmp:
            save_file({"w": torch.zeros(2)}, str(Path(tmp) / "model.safetensors"))  # safetensors: 0600
        runtime.write_json_atomic(tmp_path / "eval.json", {"metrics": {}})
    finally:
        os.umask(old)
    assert oct((tmp_path / "ckpt" / "model.safetensors").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "ckpt").stat().st_mode & 0o777) == oct(0o755)
    assert oct((tmp_path / "eval.json").stat().st_mode & 0o777) == oct(0o644)
