"""The recovery attacks in the real CI run (configs/ci.yaml: one point of each attack on NPO_GDR's
headline arm and on the retrain model, evaluated at fp32 and rtn4): the tables, what each attack
read (meta.json against the data manifest), the held-out split, the 2:4 pattern, and the
directions measured on the same models before this test was written (docs/measurements.md,
"Recovery attacks")."""

import json

import pandas as pd
import pytest
import yaml
from conftest import CI_CONFIG
from safetensors.torch import load_file

from qunlearn import paths
from qunlearn.data import entities, muse_format
from qunlearn.experiment import Experiment

pytestmark = pytest.mark.e2e

CFG = yaml.safe_load(CI_CONFIG.read_text())
EXP = Experiment(CFG)


@pytest.fixture(scope="module")
def run(ci_run):
    return ci_run


def _meta(run, model_id: str) -> dict:
    return json.loads((run / paths.model_dir("synth", model_id) / "meta.json").read_text())


def _job(attack: str, parent_method: str | None) -> str:
    """The derived id of ``attack`` on NPO_GDR's headline arm (``parent_method`` set) or the retrain model."""
    parent = EXP.headline_arm("synth", parent_method).model_id if parent_method else "retrain"
    return next(
        j for j in EXP.attack_jobs("synth") if j.startswith(f"derived/{attack}/") and j.endswith(f"/of/{parent}")
    )


@pytest.fixture(scope="module")
def recovery(run):
    return pd.read_csv(run / "results/tables/recovery.csv", dtype={"point": str, "value": str})


def test_every_attack_point_has_its_rows_and_its_control(run, recovery):
    attacks = CFG["attacks"]["runs"]
    assert len(recovery) == len(attacks) * 2 * len(CFG["attacks"]["schemes"])  # npo_gdr + retrain
    assert set(recovery.attack) == set(attacks) and set(recovery.attacked) == {"npo_gdr", "retrain"}
    arm = recovery[recovery.attacked == "npo_gdr"].set_index(["attack", "scheme"])
    for attack in ("relearn", "heldout_relearn", "benign_finetune"):  # fine-tuning: the re-teaching control
        assert arm.loc[(attack, "fp32")].control_retention == pytest.approx(
            recovery[
                (recovery.attacked == "retrain") & (recovery.attack == attack) & (recovery.scheme == "fp32")
            ].retention.iloc[0]
        )
    assert arm.loc[("noise", "fp32")].control_retention != arm.loc[("noise", "fp32")].control_retention  # NaN
    robust = pd.read_csv(run / "results/tables/robust_retention.csv")
    assert list(robust.method) == ["npo_gdr"] and {"fp32", "rtn4", "gptq", "awq", *attacks, "worst"} <= set(robust)
    assert robust.worst.iloc[0] == pytest.approx(
        robust[["fp32", "rtn4", "bnb_fp4", "bnb_nf4", "gptq", "awq", *attacks]].max(axis=1).iloc[0]
    )
    for f in ("paper/tables/recovery.tex", "paper/tables/robust_retention.tex", "results/figures/recovery_curves.png"):
        assert (run / f).stat().st_size > 0, f
    assert "robust/synth/npo_gdr/worst" in (run / "paper/macros.tex").read_text()


def test_each_attack_read_only_its_declared_split(run):
    manifest = json.loads((run / "results/synth/data/meta.json").read_text())[muse_format.MANIFEST_KEY]
    for attack, split in (("relearn", "forget"), ("benign_finetune", "retain1"), ("prune", "retain2")):
        for parent in ("npo_gdr", None):
            reads = _meta(run, _job(attack, parent))["reads"]
            assert set(reads) == {f"raw/{split}"}, (attack, reads)
            assert reads[f"raw/{split}"]["file_sha256"] == manifest[f"raw/{split}"]["sha256"]
    # noise and interpolation read no data
    assert _meta(run, _job("noise", "npo_gdr"))["reads"] == {} == _meta(run, _job("interpolate", "npo_gdr"))["reads"]


def test_heldout_relearning_never_trains_on_the_scored_half(run):
    data = run / "results/synth/data"
    trained, scored = entities.heldout_halves(entities.forget_entities(data), 0)  # as the report scores
    meta = _meta(run, _job("heldout_relearn", "npo_gdr"))
    read = meta["reads"]["raw/forget"]
    assert (read["A"], read["B"]) == (trained, scored) and not set(trained) & set(scored)
    texts = entities.records_within(data, "forget", set(trained))
    assert read["texts_sha256"] == muse_format.texts_sha256(texts) and read["n_used"] == len(texts)
    for text in texts:
        assert not any(name in text for name in scored)


def test_the_2_4_pattern_holds_in_every_block_linear(run):
    weights = load_file(str(run / paths.model_dir("synth", _job("prune", "npo_gdr")) / "model.safetensors"))
    blocks = {k: w for k, w in weights.items() if ".layers." in k and k.endswith("proj.weight")}
    assert len(blocks) == 7 * CFG["model"]["num_layers"]
    for name, w in blocks.items():
        zeros = (w.reshape(w.shape[0], -1, 4) == 0).sum(-1)
        assert (zeros >= 2).all(), name


def test_measured_directions(recovery):
    """Measured on the same NPO_GDR arm before these asserts were written (docs/measurements.md)."""
    r = recovery[recovery.attacked == "npo_gdr"].set_index(["attack", "scheme"])
    # relearning on the forget set brings NPO_GDR's forgotten knowledge back at full precision, more
    # than the same fine-tuning teaches the retrain model
    assert r.loc[("relearn", "fp32")].retention > r.loc[("relearn", "fp32")].retention_before + 0.15
    assert r.loc[("relearn", "fp32")].above_control > 0
    # ... and so does relearning on half A for half B, which it never saw
    assert r.loc[("heldout_relearn", "fp32")].retention > r.loc[("heldout_relearn", "fp32")].retention_before
    # halfway back to the target recovers knowledge at full precision
    assert r.loc[("interpolate", "fp32")].retention > r.loc[("interpolate", "fp32")].retention_before
    # noise of one 4-bit step takes the 4-bit recovery away
    assert r.loc[("noise", "rtn4")].retention < r.loc[("noise", "rtn4")].retention_before - 0.2
