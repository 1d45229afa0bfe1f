"""The config is checked twice: JSON schema at parse time (structure, names) and the stage
dataclasses (defaults, unknown keys, cross-section references). Both must name the bad key."""

import re

import jsonschema
import pytest
import yaml
from conftest import ROOT

from qunlearn.config import ConfigError, TrainConfig, UnlearnConfig, from_dict
from qunlearn.configfile import load_config_files
from qunlearn.experiment import Experiment
from qunlearn.paths import fmt_num
from qunlearn.registries import ATTACKS, METHODS, QUANTIZERS

SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())


def validate(cfg):
    jsonschema.validate(cfg, SCHEMA)


def test_default_and_shipped_configs_are_valid(default_config):
    validate(default_config)
    Experiment(default_config)
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        validate(cfg)
        Experiment(cfg)
    # an overlay is merged over the default (``--configfile config.yaml configs/overlays/<f>``)
    overlays = sorted((ROOT / "configs" / "overlays").glob("*.yaml"))
    assert overlays
    for path in overlays:
        cfg = load_config_files([ROOT / "config.yaml", path])
        validate(cfg)
        Experiment(cfg)


def test_schema_names_equal_registries():
    assert set(SCHEMA["$defs"]["method_name"]["enum"]) == set(METHODS)
    assert set(SCHEMA["$defs"]["quantizer_name"]["enum"]) == set(QUANTIZERS)
    assert set(SCHEMA["$defs"]["attack_name"]["enum"]) == set(ATTACKS)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c["train"].update(learning_rate=1), "learning_rate"),
        (lambda c: c["train"].update(lr="fast"), "'fast'"),
        (lambda c: c["unlearn"]["methods"].update(sure_magic={"alphas": [1]}), "sure_magic"),
        (lambda c: c["quantize"]["schemes"].update(q3={"quantizer": "gguf", "bits": 3}), "gguf"),
        (lambda c: c.update(colour="blue"), "colour"),
    ],
)
def test_schema_rejects_bad_configs_naming_the_key(default_config, mutate, needle):
    mutate(default_config)
    with pytest.raises(jsonschema.ValidationError) as err:
        validate(default_config)
    assert needle in str(err.value.message) or needle in str(list(err.value.path))


def test_dataclasses_reject_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) 'learning_rate'"):
        from_dict(TrainConfig, {"learning_rate": 1.0}, "train")
    with pytest.raises(ConfigError, match=r"train.lr: expected a number"):
        from_dict(TrainConfig, {"lr": "fast"}, "train")
    with pytest.raises(ConfigError, match=r"unlearn.loss_variant"):
        from_dict(UnlearnConfig, {"loss_variant": "magic"}, "unlearn")
    assert from_dict(TrainConfig, {}, "train") == TrainConfig()  # visible defaults


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c["report"].update(full_precision_scheme="bf16"), "report.full_precision_scheme"),
        (lambda c: c["report"].update(figure_schemes=["rtn5"]), "report.figure_schemes"),
        (lambda c: c["datasets"]["synth_plain"].update(reuse="nowhere"), "datasets.synth_plain.reuse"),
        (lambda c: c["quantize"]["schemes"]["rtn4"].pop("bits"), "quantize.schemes.rtn4.bits"),
        (lambda c: c["datasets"]["synth"]["synthetic"].update(forget_fraction=1.5), "forget_fraction"),
        (lambda c: c["datasets"]["synth_plain"].update(schemes=["rtn4"]), "datasets.synth_plain.schemes"),
        (lambda c: c["datasets"]["synth_plain"].update(schemes=["fp32", "int3"]), "datasets.synth_plain.schemes"),
        (
            lambda c: c["quantize"]["schemes"]["rtn4"].update(dampening=0.1),
            "quantize.schemes.rtn4: unknown key(s) 'dampening'",
        ),
        (
            lambda c: c["quantize"]["schemes"]["gptq"].update(calibration_split="forget"),
            "quantize.schemes.gptq.calibration_split",
        ),
        (
            lambda c: c["unlearn"]["methods"]["ga_gdr_sure"].update(schemes=["fp32", "int3"]),
            "unlearn.methods.ga_gdr_sure.schemes",
        ),
        (lambda c: c["unlearn"]["methods"]["ga_gdr"].update(schemes=["rtn4"]), "unlearn.methods.ga_gdr.schemes"),
        (lambda c: c["unlearn"]["methods"]["npo"].update(schemes=["fp32", "fp32"]), "unlearn.methods.npo.schemes"),
    ],
)
def test_cross_section_checks_name_the_key(default_config, mutate, needle):
    mutate(default_config)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Experiment(default_config)


def test_grid_and_paths(default_config):
    exp = Experiment(default_config)
    jobs = exp.unlearn_jobs("synth")
    assert {j.method for j in jobs} == set(default_config["unlearn"]["methods"])
    assert jobs[0].model_id.startswith(f"unlearn/{jobs[0].method}/alpha~")
    plain = {j.method for j in exp.unlearn_jobs("synth_plain")}
    assert plain == set(default_config["datasets"]["synth_plain"]["methods"])
    assert fmt_num(3e-5) == "3e-05" and fmt_num(1) == "1" and fmt_num(0.5) == "0.5"
    s = exp.unlearn_params(jobs[0])
    assert s["lr"] == float(jobs[0].lr) and s["method"] == jobs[0].method


def test_a_jobs_params_hold_exactly_its_methods_settings(default_config):
    """NPO's beta is in NPO-family jobs only, SURE's mask settings in SURE jobs only; the old shared
    keys are rejected with a pointer to their new place."""
    exp = Experiment(default_config)
    by_method = {a.method: exp.unlearn_params(a)["settings"] for a in exp.headline_arms("synth")}
    assert by_method["ga_gdr"] == {} and by_method["npo_gdr"] == {"beta": 0.1}
    assert by_method["npo_gdr_sure"] == {"beta": 0.1, "percentile": 90.0, "level": "row"}
    assert by_method["ga_gdr_sure"] == {"percentile": 90.0, "level": "row"}
    default_config["unlearn"]["npo_beta"] = 0.2
    with pytest.raises(ConfigError, match=r"unlearn\.npo_beta: now a setting .*unlearn\.methods\.<method>\.beta"):
        Experiment(default_config)


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c["unlearn"]["methods"]["npo_gdr"].update(beta=-1), "unlearn.methods.npo_gdr.beta"),
        (lambda c: c["unlearn"]["methods"]["ga_gdr"].update(beta=0.1), "unlearn.methods.ga_gdr: unknown key"),
        (lambda c: c["unlearn"]["methods"]["ga_gdr_sure"].update(level="neuron"), "unlearn.methods.ga_gdr_sure.level"),
        (
            lambda c: c["unlearn"]["methods"]["ga_gdr_sure"].update(percentile=101),
            "unlearn.methods.ga_gdr_sure.percentile",
        ),
        (lambda c: c["report"].update(utility_constrained=["npo_magic"]), "report.utility_constrained"),
    ],
)
def test_method_settings_are_checked_by_their_spec(default_config, mutate, needle):
    mutate(default_config)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        Experiment(default_config)
