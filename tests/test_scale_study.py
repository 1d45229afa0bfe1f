"""The model-size study (issue 17): per-dataset models, the scale configs (validated and dry-run,
the expected jobs planned from the Experiment object), the scale and onset tables on hand-made
evaluations, and one end-to-end run of the CI variant (configs/scale-study-ci.yaml, marked e2e)."""

import json
import math

import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake
from test_workflow import planned_jobs

from qunlearn import paths
from qunlearn.config import ConfigError, ReportConfig, from_dict
from qunlearn.configfile import check_config_files
from qunlearn.experiment import Experiment
from qunlearn.report import catalog
from qunlearn.report.frame import long_metrics
from qunlearn.report.scale import AS_TRAINED, ONSET_RETENTION, onset_table, scale_table
from qunlearn.report.stages import aggregate_quant

SCALE = ROOT / "configs" / "scale-study.yaml"
SCALE_CI = ROOT / "configs" / "scale-study-ci.yaml"
UTILITY_CONSTRAINED = ["ga_gdr", "ga_klr", "npo_gdr", "npo_klr"]


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh)


# --- per-dataset models ------------------------------------------------------------------------------


def test_a_dataset_model_is_merged_over_the_top_level_model_and_changes_only_its_training(default_config):
    base = Experiment(default_config)
    default_config["datasets"]["big"] = {
        **default_config["datasets"]["synth"],
        "model": {"hidden_size": 256, "intermediate_size": 768},
    }
    exp = Experiment(default_config)
    big = exp.model_params("big")
    assert big == {**base.model_params("synth"), "hidden_size": 256, "intermediate_size": 768}
    assert exp.model_params("synth") == exp.model_params("synth_plain") == base.model_params("synth")
    assert exp.data_params("big") == exp.data_params("synth")  # the same corpus, generated again
    assert exp.max_length("big") == exp.max_length("synth")
    sizes = exp.scale_study()
    assert set(sizes) == {"synth", "synth_plain", "big"} and sizes["big"]["hidden_size"] == 256
    assert sizes["big"]["params"] > sizes["synth"]["params"]
    assert sizes["synth"]["snap_bits"] == 4 and sizes["synth_plain"]["snap_bits"] is None


def test_one_model_is_no_scale_study_and_keeps_the_train_params(default_config):
    exp = Experiment(default_config)
    assert exp.scale_study() == {}
    assert exp.model_params("synth") == default_config["model"] | {"tie_word_embeddings": False}


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda c: c["datasets"]["synth_plain"].update(model={"hidden_size": 64}), r"synth_plain\.model: a reuse"),
        (lambda c: c["datasets"]["synth"].update(model={"hiden_size": 64}), r"synth\.model: unknown key\(s\) 'hiden"),
        (
            lambda c: c["datasets"]["synth"].update(model={"hidden_size": 96, "intermediate_size": 288}),
            r"group size 128 does not divide the layer width datasets\.synth\.model\.hidden_size = 96",
        ),
        (lambda c: c["datasets"]["synth"].update(model={"num_heads": 3}), r"datasets\.synth\.model\.num_heads"),
    ],
)
def test_bad_dataset_models_are_refused_naming_the_key(default_config, mutate, message):
    mutate(default_config)
    with pytest.raises(ConfigError, match=message):
        Experiment(default_config)


# --- the scale configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path,n_sizes", [(SCALE, 3), (SCALE_CI, 2)])
def test_the_scale_configs_validate_and_pair_each_size_with_its_snapped_reference(path, n_sizes):
    check_config_files([str(path)])
    cfg = load(path)
    exp = Experiment(cfg)
    sizes = exp.scale_study()
    owners = [d for d in sizes if exp.owner(d) == d]
    assert len(owners) >= n_sizes
    assert len({sizes[d]["params"] for d in owners}) == len(owners)  # one dataset per size
    for d in owners:
        assert sizes[d]["snap_bits"] is None  # the size's own training, released as trained
        snapped = [r for r in sizes if r != d and exp.owner(r) == d]
        assert len(snapped) == 1 and sizes[snapped[0]]["snap_bits"] == 4  # the reference, on the grid
        assert exp.data_params(d) == exp.data_params(owners[0])  # every size reads the same corpus
    if path == SCALE:
        assert list(cfg["unlearn"]["methods"]) == UTILITY_CONSTRAINED
        assert all(len(m["alphas"]) == 1 for m in cfg["unlearn"]["methods"].values())
        assert float(cfg["unlearn"]["lr"]) == 3e-5 and not any("lr" in m for m in cfg["unlearn"]["methods"].values())
        assert set(cfg["quantize"]["schemes"]) == {"fp32", "rtn8", "rtn4", "bnb_nf4", "gptq", "awq"}
    else:
        assert len(cfg["unlearn"]["methods"]) == 1 and set(cfg["quantize"]["schemes"]) == {"fp32", "rtn4"}


@pytest.mark.parametrize("path", [SCALE, SCALE_CI])
def test_the_scale_configs_dry_run_the_jobs_the_experiment_plans(path):
    exp = Experiment(load(path))
    jobs = planned_jobs("--configfile", str(path))
    owned = exp.owned_datasets()
    quantize = sum(len(exp.calibrated_schemes(ds, mid)) for ds, mid in {(d, m) for d, m, _ in exp.evaluations})
    expected = {
        "prepare_data": len(owned),  # each size generates the (same) corpus
        "train_base": 2 * len(owned),  # target + retrain per size
        "release": 2 * len(exp.datasets),  # as trained and snapped
        "select_alpha": len(exp.selection_files()),
        "unlearn": len(exp.unlearn_jobs()),
        "evaluate": len(exp.evaluations),
        "analysis": len(exp.analysis_dirs()),
        "quantize": quantize,
    }
    assert {k: jobs.get(k, 0) for k in expected} == expected
    assert jobs["aggregate_quant"] == 1 and jobs["total"] == sum(v for k, v in jobs.items() if k != "total")


# --- the tables, on hand-made evaluations ---------------------------------------------------------------

SCHEMES = {
    "fp32": {"quantizer": "none", "nominal_bits": 32},
    "rtn4": {"quantizer": "rtn", "nominal_bits": 4, "bits": 4, "group_size": 32},
    "gptq": {"quantizer": "gptq", "nominal_bits": 4, "bits": 4, "group_size": 32},
}
ARM = "unlearn/npo_gdr/alpha~1/lr~3e-05/epochs~5/loss~faithful"


def _size(hidden, layers, params, snap):
    return {
        "hidden_size": hidden,
        "num_layers": layers,
        "num_heads": 2,
        "intermediate_size": 2 * hidden,
        "params": params,
        "snap_bits": snap,
    }


SIZES = {
    "h64_snap": _size(64, 2, 200, 4),
    "h32": _size(32, 1, 100, None),
    "h64": _size(64, 2, 200, None),
    "h128": _size(128, 3, 400, None),
}
# dataset -> scheme -> the arm's forget M1 (= M2) against a target scoring 1.0: its retention
RETENTION = {
    "h32": {"fp32": 0.2, "rtn4": 0.3, "gptq": 0.2},
    "h64": {"fp32": 0.2, "rtn4": 0.7, "gptq": 0.4},
    "h64_snap": {"fp32": 0.2, "rtn4": 0.95, "gptq": 0.5},
    "h128": {"fp32": 0.25, "rtn4": 0.5, "gptq": 0.55},  # rtn4 drops again: the onset stays at h64
}
CODES = {"h32": 0.08, "h64": 0.03, "h64_snap": 0.001, "h128": 0.01}  # of the 4-bit codes, at every 4-bit scheme


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def _overall(frac):
    return {
        "n_weights": 1000,
        "cosine": 0.99,
        "rel_l2": 0.01,
        "frac_fp_changed": 1.0,
        "frac_codes_changed": frac,
        "frac_dequant_changed": frac,
        "q_cosine": 0.99,
        "q_rel_l2": 0.01,
    }


def _study(tmp_path, retention=RETENTION):
    """Eval JSONs (target and retrain score 1.0; the arm's M1 = M2 = its retention, M4 0.9 of the
    target's 1.0) and analysis outputs of each dataset; the metrics.csv rule aggregate would write."""
    evals, analyses = [], []
    for ds, by_scheme in retention.items():
        for scheme, r in by_scheme.items():
            for mid, m, m4 in (("target", 1.0, 1.0), ("retrain", 0.1, 1.0), (ARM, r, 0.9)):
                evals.append(
                    _write(
                        tmp_path / paths.eval_file(ds, mid, scheme),
                        {"metrics": {"verbmem_f": m, "knowmem_f": m, "knowmem_r": m4, "mia_auc": 0.4}},
                    )
                )
        adir = tmp_path / paths.analysis_dir(ds, ARM)
        for scheme in SCHEMES:
            frac = 1.0 if scheme == "fp32" else CODES[ds]
            _write(adir / f"{scheme}.json", {"overall": _overall(frac), "by_module": {}, "by_layer": {}})
        analyses.append(str(adir))
    cfg = {"utility_constrained": ["npo_gdr"]}
    metrics = tmp_path / "metrics.csv"
    long_metrics(evals, from_dict(ReportConfig, cfg)).to_csv(metrics, index=False)
    return metrics, analyses, cfg


def _outputs(tmp_path):
    return {k: str(tmp_path / "out" / p) for k, p in catalog.outputs("aggregate_quant").items()}


def test_the_scale_table_has_one_row_per_size_and_release_and_finds_the_onset(tmp_path):
    metrics, analyses, cfg = _study(tmp_path)
    out = _outputs(tmp_path)
    aggregate_quant(metrics, analyses, cfg, SCHEMES, out, scale=SIZES)
    scale = pd.read_csv(out["scale_csv"], keep_default_na=False, na_values=[""])
    assert list(scale.dataset) == ["h32", "h64", "h64_snap", "h128"]  # smallest first, as trained first
    assert list(scale.release) == [AS_TRAINED, AS_TRAINED, "snapped (4 bits)", AS_TRAINED]
    for r in scale.itertuples():
        for s in SCHEMES:
            assert getattr(r, f"retention_{s}") == pytest.approx(RETENTION[r.dataset][s])
        assert r.m4_rel == pytest.approx(0.9) and r.n_methods == 1
        assert r.pct_codes_changed_rtn4 == pytest.approx(100 * CODES[r.dataset])
        assert r.pct_codes_changed_gptq == pytest.approx(100 * CODES[r.dataset])
    assert "pct_codes_changed_fp32" not in scale  # only the 4-bit schemes' codes
    onset = pd.read_csv(out["scale_onset_csv"], keep_default_na=False, na_values=[""]).set_index("scheme")
    assert onset.threshold.tolist() == [ONSET_RETENTION] * 2
    assert onset.onset["rtn4"] == "h64" and onset.params["rtn4"] == 200 and onset.retention["rtn4"] == 0.7
    # gptq: the snapped h64 (0.5) and h128 (0.55) stay below 0.6: none (the snapped rows never count)
    assert onset.onset["gptq"] == "none" and math.isnan(onset.params["gptq"])
    assert "| gptq" in open(out["scale_onset_md"]).read() and "none" in open(out["scale_onset_md"]).read()
    for fmt in ("png", "pdf"):
        assert (tmp_path / "out" / catalog.get("figure", "retention_vs_size").path(fmt)).stat().st_size > 0


def test_the_onset_is_the_first_size_above_the_threshold_not_the_largest():
    scale = pd.DataFrame(
        {
            "dataset": ["a", "b", "c"],
            "release": [AS_TRAINED] * 3,
            "hidden_size": [32, 64, 128],
            "num_layers": [1, 2, 3],
            "params": [10, 20, 40],
            "retention_rtn4": [0.61, 0.2, 0.9],  # a: exactly the first one above, whatever follows
            "retention_gptq": [0.6, 0.6, 0.6],  # "exceeds": 0.6 itself is not above
        }
    )
    onset = onset_table(scale, SCHEMES).set_index("scheme")
    assert onset.onset.to_dict() == {"rtn4": "a", "gptq": "none"}


def test_without_a_scale_study_the_tables_are_empty_and_the_figure_says_so(tmp_path):
    metrics, analyses, cfg = _study(tmp_path, {"h32": RETENTION["h32"]})
    out = _outputs(tmp_path)
    aggregate_quant(metrics, analyses, cfg, SCHEMES, out, scale={})
    for stem in ("scale", "scale_onset"):
        assert pd.read_csv(out[f"{stem}_csv"]).empty
        assert open(out[f"{stem}_md"]).read() == "(no rows)\n"
    assert (tmp_path / "out" / catalog.get("figure", "retention_vs_size").path("png")).stat().st_size > 0
    empty = scale_table(pd.read_csv(metrics), pd.DataFrame(), {}, SCHEMES, from_dict(ReportConfig, cfg))
    assert empty.empty and "release" in empty


# --- end to end: the CI variant through Snakemake --------------------------------------------------------


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("scale-e2e")
    run_snakemake(workdir, configfile=SCALE_CI, timeout=1200)
    return workdir


@pytest.mark.e2e
def test_the_ci_scale_study_runs_and_reports_every_size_snapped_and_not(scale_run):
    exp = Experiment(load(SCALE_CI))
    sizes = exp.scale_study()
    scale = pd.read_csv(scale_run / "results/tables/scale.csv", keep_default_na=False, na_values=[""])
    assert sorted(scale.dataset) == sorted(sizes) and len(scale) == len(sizes)
    assert {(r.hidden_size, r.release) for r in scale.itertuples()} == {
        (s["hidden_size"], AS_TRAINED if s["snap_bits"] is None else "snapped (4 bits)") for s in sizes.values()
    }
    for col in ("retention_fp32", "retention_rtn4", "pct_codes_changed_rtn4"):
        assert scale[col].notna().all(), col
    assert scale[["retention_fp32", "retention_rtn4"]].stack().between(0, 2).all()
    # m4_rel is empty where the target answers no retain question (the CI models barely learn)
    assert scale.pct_codes_changed_rtn4.between(0, 100).all() and (scale.m4_rel.dropna() >= 0).all()
    onset = pd.read_csv(scale_run / "results/tables/scale_onset.csv", keep_default_na=False, na_values=[""])
    assert list(onset.scheme) == ["rtn4"] and onset.onset[0] in {"none", *sizes}
    for fmt in ("png", "pdf"):
        assert (scale_run / "results/figures" / f"retention_vs_size.{fmt}").stat().st_size > 0
    assert (scale_run / "paper/tables/scale.tex").read_bytes() == (scale_run / "results/tables/scale.tex").read_bytes()
    owners = [d for d in sizes if exp.owner(d) == d]
    # every size generated the same corpus; the planner's parameter count is the trained model's
    manifests = {d: json.loads((scale_run / paths.data_dir(d) / "meta.json").read_text()) for d in owners}
    splits = {d: {k: v["sha256"] for k, v in m["splits"].items()} for d, m in manifests.items()}
    assert all(s == splits[owners[0]] for s in splits.values())
    for d in owners:
        trained = json.loads((scale_run / paths.trained_dir(d, "target") / "meta.json").read_text())
        assert trained["n_parameters"] == sizes[d]["params"], d
