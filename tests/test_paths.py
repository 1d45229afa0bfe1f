"""The path grammar (src/qunlearn/paths.py): every model id and output path round-trips, the
grammar is open to external and derived ids, and the workflow's model_id constraint is the grammar's."""

import re

import pytest
from conftest import ROOT

from qunlearn import paths
from qunlearn.paths import Arm, derived_id, external_id, parse_model_id

ARM = Arm("synth", "npo_gdr_sure", "selected", "0.001", "40", "paper_code")
IDS = [
    "target",
    "retrain",
    ARM.model_id,
    Arm("news", "ga", "2", "1e-05", "10", "faithful").model_id,
    external_id("open_unlearning_npo"),
    derived_id("target", "relearn", {"steps": "100"}),
    derived_id(ARM.model_id, "prune", {"sparsity": "0.5", "kind": "wanda"}),
    derived_id(derived_id(external_id("mine"), "relearn", {"steps": "50"}), "noise", {"c": "0.25"}),
    derived_id("retrain", "merge"),
    ARM.replace(seed="1").model_id,
    derived_id(Arm("news", "ga", "2", "1e-05", "10", "faithful", "7").model_id, "noise", {"c": "0.5"}),
]


@pytest.mark.parametrize("model_id", IDS)
def test_model_ids_round_trip(model_id):
    parts = parse_model_id(model_id)
    assert parts.model_id == model_id
    if parts.kind == "unlearn":
        assert parts.arm("synth").model_id == model_id
    if parts.kind == "external":
        assert external_id(parts.name) == model_id
    if parts.kind == "derived":
        assert derived_id(parts.parent, parts.transform, dict(parts.settings)) == model_id
        assert parts.root.kind in ("base", "unlearn", "external")


@pytest.mark.parametrize("model_id", IDS)
@pytest.mark.parametrize("scheme", ["fp32", "rtn4", "bnb_nf4"])
def test_output_paths_round_trip(model_id, scheme):
    assert paths.parse_eval_file(paths.eval_file("synth", model_id, scheme)) == ("synth", model_id, scheme)
    assert paths.parse_eval_file("/tmp/run/" + paths.eval_file("synth", model_id, scheme))[1] == model_id
    assert paths.parse_analysis_file(paths.analysis_file("synth", model_id, scheme)) == ("synth", model_id, scheme)
    assert paths.parse(paths.QUANT, paths.quant_dir("synth", model_id, scheme)) == {
        "dataset": "synth",
        "model_id": model_id,
        "scheme": scheme,
    }
    assert paths.parse(paths.MODEL, paths.model_dir("synth", model_id))["model_id"] == model_id


def test_the_base_seed_keeps_the_ids_it_always_had():
    """An arm without a seed (the config's base seed) has exactly the pre-seed id; a replicate's
    seed segment sits after the method, so its directory is never inside the base-seed arm's."""
    assert ARM.model_id == "unlearn/npo_gdr_sure/alpha~selected/lr~0.001/epochs~40/loss~paper_code"
    seeded = ARM.replace(seed="3")
    assert seeded.model_id == "unlearn/npo_gdr_sure/seed~3/alpha~selected/lr~0.001/epochs~40/loss~paper_code"
    assert parse_model_id(seeded.model_id).seed == "3" and parse_model_id(ARM.model_id).seed == ""
    assert parse_model_id(seeded.model_id).arm("synth") == seeded.replace(dataset="synth")
    assert paths.seedless_id(seeded.model_id) == ARM.model_id and paths.seed_of(seeded.model_id) == "3"
    inner = derived_id(seeded.model_id, "noise", {"c": "0.5"})
    assert paths.seedless_id(inner) == derived_id(ARM.model_id, "noise", {"c": "0.5"})
    assert paths.seed_of(ARM.model_id) == "" and paths.seedless_id("target") == "target"
    assert not paths.model_dir("synth", seeded.model_id).startswith(paths.model_dir("synth", ARM.model_id) + "/")


def test_derived_models_never_live_inside_their_parent():
    """Rewriting a parent (atomic replace of its directory) must not touch a derived model."""
    for model_id in IDS:
        d = paths.model_dir("synth", model_id)
        for other in IDS:
            if other != model_id:
                assert not d.startswith(paths.model_dir("synth", other) + "/"), (model_id, other)


@pytest.mark.parametrize(
    "bad",
    [
        "unlearn/ga",
        "target/extra",
        "external/a/b",
        "derived/x/of",
        "derived/x/k~v",
        "unlearn/ga/alpha~1/lr~1/epochs~1",
        "unlearn/ga/alpha~1/lr~1/epochs~1/loss~faithful/seed~1",  # the seed goes after the method
        "unlearn/ga/seed~x/alpha~1/lr~1/epochs~1/loss~faithful",
        "Target",
        "",
    ],
)
def test_strings_outside_the_grammar_are_rejected(bad):
    with pytest.raises(ValueError, match="not a model id"):
        parse_model_id(bad)


@pytest.mark.parametrize("name", ["", "a/b", "a~b", "of"])
def test_formatters_reject_segments_that_would_break_parsing(name):
    with pytest.raises(ValueError):
        external_id(name)
    with pytest.raises(ValueError):
        derived_id("target", name)


def test_the_workflow_constrains_model_id_by_the_grammar():
    common = (ROOT / "workflow/rules/common.smk").read_text()
    assert "model_id=paths.MODEL_ID_REGEX" in common
    rx = re.compile(rf"^{paths.MODEL_ID_REGEX}$")
    assert all(rx.match(m) for m in IDS) and not rx.match("unlearn/ga")


def test_an_eval_path_that_does_not_fit_names_the_path():
    with pytest.raises(ValueError, match="results/synth/evals/target/fp32.json: not a path of the form"):
        paths.parse_eval_file("results/synth/evals/target/fp32.json")
