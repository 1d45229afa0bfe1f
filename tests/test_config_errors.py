"""Bad config input (issue 16, "no silently wrong result, every error names its file or key"): one
test per class of bad input, each asserting that the error names the file, line or key. The table
of what a user sees is docs/guide/bad-input.md."""

import math
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT
from test_workflow import snakemake

from qunlearn.config import ConfigError, from_dict
from qunlearn.configfile import load_config_file, validate_config
from qunlearn.experiment import Experiment
from qunlearn.paths import fmt_num


def dry_run_error(tmp_path, text: str, name="bad.yaml") -> str:
    """``snakemake -n --configfile <written text>``: it must fail; its output."""
    path = tmp_path / name
    path.write_text(text)
    proc = snakemake("-n", "--configfile", str(path), check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stdout + proc.stderr


def dump(cfg) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


# --- 1a. a duplicated key ----------------------------------------------------------------------------


def test_a_duplicated_key_names_the_file_the_key_and_both_lines(tmp_path):
    text = (ROOT / "config.yaml").read_text()
    first = "    rtn4: {quantizer: rtn, bits: 4, group_size: 128}\n"
    assert text.count(first) == 1
    text = text.replace(first, first + "    rtn4: {quantizer: rtn, bits: 3, group_size: 128}\n")
    line = text.splitlines().index(first.rstrip("\n")) + 1
    out = dry_run_error(tmp_path, text)
    path = tmp_path / "bad.yaml"
    want = f"{path}:{line + 1}: duplicated key quantize.schemes.rtn4 (first at line {line}, again at line {line + 1})"
    assert want in out, out


def test_the_loader_rejects_duplicates_at_any_depth_and_in_json(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a:\n  b: [1, {c: 1, c: 2}]\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}:2: duplicated key a.b[1].c (first at line 2")):
        load_config_file(path)
    path.write_text("a: &x {b: 1}\nc:\n  <<: *x\n  b: 2\n")  # overriding a merged key is not a duplicate
    assert load_config_file(path) == {"a": {"b": 1}, "c": {"b": 2}}
    path = tmp_path / "c.json"
    path.write_text('{"seed": 0, "seed": 1}')
    with pytest.raises(ConfigError, match=re.escape(f"{path}: duplicated key 'seed'")):
        load_config_file(path)


# --- 1b. numbers in ids are exact ----------------------------------------------------------------------


def test_fmt_num_is_exact_and_keeps_existing_paths():
    assert [fmt_num(x) for x in (1, 2, 5, 3e-05, 0.001, 1e-3, 0.5, 2e-3, 1e20)] == [
        "1",
        "2",
        "5",
        "3e-05",
        "0.001",
        "0.001",
        "0.5",
        "0.002",
        "1e+20",
    ]
    for x in (1.0000001, 3.0000001e-5, 123456789, 0.1 + 0.2, 1.23456789e-7):
        assert float(fmt_num(x)) == x
    assert fmt_num(1.0000001) != fmt_num(1) and fmt_num(3.0000001e-5) != fmt_num(3e-5)
    with pytest.raises(ValueError, match="not a finite number"):
        fmt_num(math.inf)


def test_alphas_and_lrs_that_differ_past_six_digits_are_two_runs(full_config):
    full_config["unlearn"]["methods"]["ga_gdr"]["alphas"] = [1, 1.0000001]
    full_config["sweeps"]["lr"]["lrs"] = [3e-5, 3.0000001e-5]
    exp = Experiment(full_config)
    assert [a.alpha for a in exp.grid_arms("synth", "ga_gdr")] == ["1", "1.0000001"]
    lrs = {a.lr for a in exp.study_arms("lr") if a.method == "ga_gdr"}
    assert lrs == {"3e-05", "3.0000001e-05"}
    params = {exp.unlearn_params(a)["lr"] for a in exp.study_arms("lr") if a.method == "ga_gdr"}
    assert params == {3e-05, 3.0000001e-05}


def test_a_selected_alpha_is_reported_and_copied_under_its_exact_text():
    """The report labels an alpha~selected arm by the selected alpha's path text; the unlearn job
    looks up the grid twin to copy by the same text (stages.unlearn_model uses fmt_num too)."""
    from qunlearn.report.frame import parse_eval_path

    path = "results/synth/eval/unlearn/ga_gdr/alpha~selected/lr~3e-05/epochs~40/loss~faithful/fp32.json"
    assert parse_eval_path(path, {("synth", "ga_gdr"): 1.0000001})["alpha"] == "1.0000001"
    assert parse_eval_path(path, {("synth", "ga_gdr"): 2.0})["alpha"] == "2"


def test_two_configured_values_with_one_text_are_rejected(full_config):
    full_config["sweeps"]["lr"]["lrs"] = [3e-5, 3.0e-5]
    with pytest.raises(ConfigError, match=r"sweeps\.lr\.lrs: 3e-05 is given twice"):
        Experiment(full_config)


# --- 1c. report.utility_constrained -------------------------------------------------------------------


@pytest.mark.parametrize("methods", [["ga_gdr", "simnpo"], []])
def test_utility_constrained_must_name_configured_methods(default_config, methods):
    """simnpo is a registered method, not configured by the default: the headline mean would be empty."""
    assert "simnpo" not in default_config["unlearn"]["methods"]
    default_config["report"]["utility_constrained"] = methods
    with pytest.raises(ConfigError, match=r"report\.utility_constrained: "):
        Experiment(default_config)


# --- 2. late failures rejected at parse time -----------------------------------------------------------


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (
            lambda c: c["quantize"]["schemes"]["gptq"].update(group_size=96),
            "quantize.schemes.gptq.group_size: group size 96 does not divide the layer width model.hidden_size = 128",
        ),
        (
            lambda c: c["quantize"]["schemes"]["awq"].update(group_size=256),
            "quantize.schemes.awq.group_size: group size 256 does not divide the layer width model.hidden_size",
        ),
        (
            lambda c: c["model"].update(intermediate_size=320),
            "datasets.synth.release.snap_group_size: group size 128 does not divide the layer width "
            "model.intermediate_size = 320",
        ),
        (
            lambda c: c["datasets"]["synth"]["release"].update(snap_group_size=48),
            "datasets.synth.release.snap_group_size: group size 48",
        ),
        (lambda c: c["model"].update(num_heads=3), "model.num_heads: hidden_size 128 is not divisible by num_heads 3"),
        (
            lambda c: c["model"].update(hidden_size=132, num_heads=4),
            "model.num_heads: head size hidden_size/num_heads = 33 is odd",
        ),
        (lambda c: c["report"].update(figure_schemes=[]), "report.figure_schemes: at least one scheme"),
        (
            lambda c: c["datasets"]["synth"].update(pretrained={"target": {"hub_id": ""}}),
            "datasets.synth.pretrained.target.hub_id: empty string",
        ),
        (
            lambda c: c["datasets"]["synth"].update(pretrained={"retrain": {"path": " "}}),
            "datasets.synth.pretrained.retrain.path: empty string",
        ),
        (
            lambda c: c["datasets"]["synth"].update(source="muse", muse={"hub_id": ""}),
            "datasets.synth.muse.hub_id: empty string",
        ),
        (lambda c: c["unlearn"]["methods"]["ga_gdr"].update(alphas=[1, math.nan]), "ga_gdr.alphas[1]: expected"),
        (lambda c: c["unlearn"].update(lr=math.inf), "unlearn.lr: expected a finite number, got inf"),
        (lambda c: c["unlearn"]["methods"]["npo"].update(lr=math.nan), "unlearn.methods.npo.lr: expected a finite"),
        (
            lambda c: c.setdefault("sweeps", {"lr": {"methods": ["ga_gdr"]}})["lr"].update(lrs=[3e-5, math.inf]),
            "sweeps.lr.lrs[1]: expected a finite",
        ),
        (lambda c: c["train"].update(lr=-math.inf), "train.lr: expected a finite"),
        (lambda c: c["unlearn"]["methods"]["npo_gdr"].update(beta=math.nan), "unlearn.methods.npo_gdr.beta: expected"),
        (lambda c: c["quantize"]["schemes"]["gptq"].update(dampening=math.nan), "gptq.dampening: expected a finite"),
        (lambda c: c["compute"].update(gpu_mem_gb=math.inf), "compute.gpu_mem_gb: expected a finite"),
    ],
)
def test_late_failures_are_config_errors_naming_the_key(default_config, mutate, needle):
    default_config.setdefault("compute", {})
    mutate(default_config)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Experiment(default_config)


def test_a_nan_alpha_in_a_config_file_fails_the_dry_run_naming_the_key(tmp_path):
    """YAML's .nan passes the JSON schema (NaN compares false with every bound); the dataclass names it."""
    text = (ROOT / "config.yaml").read_text()
    old = "    ga_gdr:  {alphas: [1, 2, 5]}\n"
    assert text.count(old) == 1
    out = dry_run_error(tmp_path, text.replace(old, "    ga_gdr:  {alphas: [1, .nan]}\n"))
    assert "invalid config: unlearn.methods.ga_gdr.alphas[1]: expected a finite number, got nan" in out, out


def test_group_sizes_of_published_bases_are_checked_when_a_job_holds_the_model(default_config):
    """Widths of a base taken as published are unknown at parse time: the config passes, and the
    quantizer refuses the model naming the scheme's setting and the layer."""
    import torch

    from qunlearn.quantize import check_group_size, quantize_model
    from qunlearn.quantize.rtn import snap_linears

    default_config["datasets"]["synth"]["pretrained"] = {
        "target": {"hub_id": "org/model"},
        "retrain": {"hub_id": "org/retrain"},
    }
    default_config["model"]["hidden_size"] = 96  # the tiny model's width is not the published one's
    exp = Experiment(default_config)
    assert exp.schemes["rtn4"].setting("group_size") == 128
    model = torch.nn.Sequential()
    model.add_module("up_proj", torch.nn.Linear(128, 192, bias=False))
    model.add_module("down_proj", torch.nn.Linear(192, 128, bias=False))
    with pytest.raises(ConfigError, match=r"quantize\.schemes\.rtn4\.group_size: .* width 192 of layer down_proj"):
        quantize_model(model, exp.schemes["rtn4"])
    with pytest.raises(ConfigError, match=r"release\.snap_group_size: group size 128 .* of layer down_proj"):
        snap_linears(model, 4, 128, False)
    check_group_size({"up_proj": model.up_proj, "down_proj": model.down_proj}, 64, "x")  # 64 divides both


# --- 3. errors that name the file: YAML syntax, empty file, unknown keys -------------------------------


def embedded_config_error(tmp_path, text: str) -> str:
    """A run without --configfile reads config.yaml of the working directory."""
    (tmp_path / "config.yaml").write_text(text)
    proc = snakemake("-n", "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"), check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stdout + proc.stderr


def test_yaml_syntax_errors_and_empty_files_name_the_file_and_line(tmp_path):
    out = embedded_config_error(tmp_path, "seed: 0\ndatasets: {synth: {source: synthetic}\n  x: [\n")
    assert "invalid config: config.yaml:3:3: invalid YAML: expected ',' or '}'" in out, out
    out = embedded_config_error(tmp_path, "# nothing yet\n")
    assert "invalid config: config.yaml:1: the config file is empty" in out, out


def test_the_config_checker_names_file_and_line_of_a_configfile(tmp_path):
    """Snakemake reads --configfile before the workflow (its message names no file); the checker does."""
    path = tmp_path / "mine.yaml"
    path.write_text("seed: 0\nunlearn:\n  lr: [1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "qunlearn.configfile", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and f"invalid config: {path}:4:1: invalid YAML" in proc.stderr, proc.stderr
    path.write_text((ROOT / "config.yaml").read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "qunlearn.configfile", str(path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "config OK" in proc.stdout, proc.stderr


def test_an_unknown_key_lists_the_allowed_keys_without_the_schema(tmp_path, default_config):
    default_config["model"]["hiden_size"] = 64
    out = dry_run_error(tmp_path, dump(default_config))
    assert (
        "invalid config: model.hiden_size: unknown key; allowed: hidden_size, num_layers, num_heads, "
        "intermediate_size, max_length, tie_word_embeddings" in out
    ), out
    assert "$defs" not in out and "additionalProperties" not in out and len(out.splitlines()) < 15, out


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda c: c.update(colour="blue"),
            "colour: unknown key; allowed: seed, seeds, threads, datasets, compute, model",
        ),
        (
            lambda c: c["unlearn"]["methods"].update(sure_magic={"alphas": [1]}),
            "unlearn.methods.sure_magic: unknown name; allowed: ga, ga_gdr,",
        ),
        (
            lambda c: c["datasets"]["synth"].update(source="hub"),
            "datasets.synth.source: 'hub' is not allowed; allowed: synthetic, muse, reuse",
        ),
        (lambda c: c["train"].update(lr="fast"), "train.lr: expected number, got str 'fast'"),
        (lambda c: c["unlearn"].update(epochs=0), "unlearn.epochs: 0 fails minimum 1"),
        (lambda c: c.pop("quantize"), "(top level): 'quantize' is required"),
    ],
)
def test_schema_errors_are_one_line_naming_the_key(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(ConfigError) as err:
        validate_config(default_config)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_validate_config_fills_the_schemas_top_level_defaults(default_config):
    del default_config["seed"], default_config["threads"]
    validate_config(default_config)
    assert default_config["seed"] == 0 and default_config["threads"] == 1


def test_non_finite_floats_are_rejected_unless_a_field_opts_in():
    from dataclasses import dataclass, field

    from qunlearn.config import NONFINITE

    @dataclass
    class S:
        x: float = 1.0
        bound: float = field(default=math.inf, metadata={NONFINITE: True})

    with pytest.raises(ConfigError, match=r"s\.x: expected a finite number, got nan"):
        from_dict(S, {"x": math.nan}, "s")
    assert from_dict(S, {"bound": -math.inf}, "s").bound == -math.inf
    with pytest.raises(ConfigError, match=r"s\.x: .* too large for a float"):
        from_dict(S, {"x": 10**400}, "s")
