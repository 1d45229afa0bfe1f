"""The alpha selection rule on hand-made grids, the stage that writes it, and how arms find it."""

import copy
import math

import pytest

from qunlearn.config import ConfigError
from qunlearn.experiment import Experiment
from qunlearn.paths import parse_model_id
from qunlearn.report.retention import forget_retention
from qunlearn.runtime import read_json, write_json_atomic
from qunlearn.selection import select_alpha, select_alpha_stage

TARGET = {"verbmem_f": 0.8, "knowmem_f": 1.0, "knowmem_r": 1.0}


def m(m1, m2, m4):
    return {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4}


def test_forget_retention_is_the_mean_ratio_to_the_target():
    assert forget_retention(m(0.4, 0.25, 1), TARGET) == pytest.approx((0.5 + 0.25) / 2)
    # a target scoring 0 on a metric has nothing to retain there: that metric leaves the mean
    assert forget_retention(m(0.4, 0.25, 1), m(0, 1.0, 1)) == pytest.approx(0.25)
    assert math.isnan(forget_retention(m(0.4, 0.25, 1), m(0, 0, 1)))


def test_picks_lowest_forget_retention_among_alphas_meeting_the_utility_floor():
    grid = {
        1.0: m(0.0, 0.0, 0.5),  # forgets most but utility 0.5 < 0.8: excluded
        2.0: m(0.2, 0.3, 0.8),  # exactly at the floor: allowed; retention (0.25 + 0.3) / 2
        5.0: m(0.4, 0.4, 0.9),  # allowed, forgets less
    }
    sel = select_alpha(grid, TARGET, 0.8)
    assert sel["alpha"] == 2.0 and sel["constraint_met"] is True
    assert [g["meets_utility"] for g in sel["grid"]] == [False, True, True]
    assert sel["grid"][1]["forget_retention"] == pytest.approx(0.275)


def test_ties_go_to_the_smaller_alpha_and_no_feasible_alpha_picks_the_best_utility():
    grid = {5.0: m(0.2, 0.2, 0.9), 2.0: m(0.2, 0.2, 0.95)}
    assert select_alpha(grid, TARGET, 0.8)["alpha"] == 2.0
    grid = {1.0: m(0.0, 0.0, 0.1), 2.0: m(0.1, 0.1, 0.6), 5.0: m(0.5, 0.5, 0.6)}
    sel = select_alpha(grid, TARGET, 0.8)
    assert sel["alpha"] == 2.0 and sel["constraint_met"] is False
    with pytest.raises(ValueError):
        select_alpha({}, TARGET, 0.8)


def test_stage_reads_eval_jsons_and_records_the_grid(tmp_path):
    paths = {}
    for a, s in (("1", m(0.0, 0.0, 0.5)), ("2", m(0.2, 0.3, 0.85))):
        paths[a] = str(tmp_path / f"a{a}.json")
        write_json_atomic(paths[a], {"metrics": s})
    write_json_atomic(tmp_path / "t.json", {"metrics": TARGET})
    out = tmp_path / "sel.json"
    select_alpha_stage(paths, str(tmp_path / "t.json"), [1, 2], {"schemes": ["fp32"]}, out, "ga_gdr")
    sel = read_json(out)
    assert (
        sel["alpha"] == 2.0 and len(sel["grid"]) == 2 and set(sel["meta"]["inputs"]) == {"alpha~1", "alpha~2", "target"}
    )
    single = tmp_path / "single.json"
    select_alpha_stage({}, None, [3], {}, single, "ga")
    assert read_json(single)["alpha"] == 3.0


def test_selection_sources_of_reuse_datasets_and_sure_methods(default_config):
    cfg = default_config
    exp = Experiment(cfg)
    assert exp.selection_source("synth", "ga_gdr") == ("synth", "ga_gdr")
    assert exp.selection_source("synth_plain", "ga_gdr") == ("synth", "ga_gdr")
    assert exp.selection_source("synth", "ga_gdr_sure") == ("synth", "ga_gdr")  # the spec's objective
    bad = copy.deepcopy(cfg)
    del bad["unlearn"]["methods"]["ga_gdr"], bad["datasets"]["synth_plain"]
    bad["report"]["utility_constrained"] = ["ga_klr"]
    with pytest.raises(ConfigError, match="ga_gdr_sure.alphas"):
        Experiment(bad)


def test_selected_arms_carry_no_alpha_in_their_params(default_config):
    exp = Experiment(default_config)
    arm = exp.headline_arm("synth", "ga_gdr")
    assert arm.alpha == "selected" and "alpha" not in exp.unlearn_params(arm)
    grid = exp.grid_arms("synth", "ga_gdr")
    assert [a.alpha for a in grid] == ["1", "2", "5"]
    assert exp.unlearn_params(grid[1])["alpha"] == 2.0
    assert parse_model_id(arm.model_id).alpha == "selected"


def test_a_selected_arm_copies_its_grid_twin_only_when_the_configs_agree(tmp_path):
    from qunlearn.stages import unlearn_model

    cfg = {"method": "ga_gdr", "lr": 3e-5, "epochs": 2, "batch_size": 4}
    full = {**cfg, "alpha": 2.0}
    from qunlearn.config import UnlearnConfig, from_dict, to_dict

    twin = tmp_path / "alpha~2"
    twin.mkdir()
    (twin / "model.safetensors").write_bytes(b"weights")
    write_json_atomic(twin / "meta.json", {"config": to_dict(from_dict(UnlearnConfig, full)), "history": {"steps": 2}})
    write_json_atomic(tmp_path / "sel.json", {"alpha": 2.0, "grid": []})
    out = tmp_path / "selected"
    meta = unlearn_model(
        tmp_path / "no-base",
        tmp_path / "no-data",
        out,
        cfg,
        max_length=8,
        seed=0,
        progress=False,
        selection_json=tmp_path / "sel.json",
        grid_twins={"2": str(twin)},
    )
    assert (out / "model.safetensors").read_bytes() == b"weights" and meta["copied_from"] == str(twin)
    assert read_json(out / "meta.json")["config"]["alpha"] == 2.0
    write_json_atomic(twin / "meta.json", {"config": {**to_dict(from_dict(UnlearnConfig, full)), "lr": 1.0}})
    with pytest.raises(ValueError, match="differs"):
        unlearn_model(
            tmp_path / "no-base",
            tmp_path / "no-data",
            tmp_path / "other",
            cfg,
            max_length=8,
            seed=0,
            progress=False,
            selection_json=tmp_path / "sel.json",
            grid_twins={"2": str(twin)},
        )
    assert not (tmp_path / "other").exists()
