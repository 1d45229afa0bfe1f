"""The report package's contracts: the catalog is parse-time safe and complete, the modules are
layered without cycles, retention has one definition (the selection and the tables agree, also when
the target scores 0 on a metric), and outputs are written atomically."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from qunlearn import runtime
from qunlearn.config import ReportConfig
from qunlearn.report import catalog
from qunlearn.report.frame import long_metrics
from qunlearn.report.tables import retention
from qunlearn.selection import select_alpha

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = [
    "retention",
    "intervals",
    "catalog",
    "frame",
    "render",
    "tables",
    "studies",
    "quant",
    "scale",
    "figures",
    "attacks",
    "paper",
    "stages",
]


def test_catalog_imports_neither_pandas_nor_torch():
    code = (
        "import sys, qunlearn.report.catalog as c; c.outputs('aggregate'); c.paper_files(); "
        "bad = {'pandas', 'torch', 'matplotlib'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(SRC)})


def test_every_item_is_declared_once_with_a_caption():
    assert len({(i.kind, i.stem) for i in catalog.ITEMS}) == len(catalog.ITEMS)
    keys = [k for rule in catalog.RULES for k in catalog.outputs(rule)]
    assert len(keys) == len(set(keys)) and all(k.isidentifier() for k in keys)
    for item in catalog.ITEMS:
        assert Path(item.caption_file).is_file(), item.caption_file
        assert item.caption and "\n" not in item.caption
        assert (item.label != "") == ("tex" in item.formats), item.stem
    # what a rule draws from is made by a rule before it
    made = set()
    for rule in catalog.RULES:
        assert set(catalog.table_inputs(rule).values()) <= made, rule
        made |= set(catalog.outputs(rule).values())


def test_a_conditional_item_is_made_only_where_its_condition_holds():
    """An item's ``requires`` is a MethodSpec trait (Experiment.report_conditions() says which hold);
    every listing the workflow uses leaves the item out without it and keeps it with it."""
    from qunlearn.plugins import MethodSpec

    conditional = [i for i in catalog.ITEMS if i.requires]
    assert [i.stem for i in conditional] == ["qa_comparison"]
    assert set(catalog.CONDITIONS) <= set(MethodSpec.__dataclass_fields__)
    qa = catalog.get("table", "qa_comparison")
    none, held = frozenset(), frozenset({"quantization_aware"})
    for present, made in ((None, True), (none, False), (held, True)):
        assert ("qa_comparison_csv" in catalog.outputs(qa.rule, present)) == made
        assert (qa.paper_path("tex") in catalog.paper_files(present)) == made
        assert (qa.paper_path("tex") in catalog.paper_copies(qa.rule, present=present).values()) == made
        assert ("qa_comparison.tex" in catalog.files("table", present)) == made
    # the unconditional items are the same either way
    assert len(catalog.paper_files(held)) - len(catalog.paper_files(none)) == len(qa.formats)


def test_report_modules_import_only_lower_layers():
    assert sorted(p.stem for p in (SRC / "qunlearn/report").glob("*.py") if p.stem != "__init__") == sorted(LAYERS)
    for i, name in enumerate(LAYERS):
        tree = ast.parse((SRC / "qunlearn/report" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
                for t in targets:
                    assert LAYERS.index(t) < i, f"{name} imports {t} (a layer above it)"


def _eval(root, model_id, m1, m2, m4, auc=0.5):
    path = root / "results/d/eval" / model_id / "fp32.json"
    runtime.write_json_atomic(path, {"metrics": {"verbmem_f": m1, "knowmem_f": m2, "knowmem_r": m4, "mia_auc": auc}})
    return str(path)


def test_a_target_scoring_zero_on_m1_counts_m2_alone_in_the_selection_and_the_table(tmp_path):
    target = {"verbmem_f": 0.0, "knowmem_f": 0.8, "knowmem_r": 1.0}
    grid = {
        1.0: {"verbmem_f": 0.3, "knowmem_f": 0.6, "knowmem_r": 0.9},
        2.0: {"verbmem_f": 0.0, "knowmem_f": 0.2, "knowmem_r": 0.9},
    }
    arm = "unlearn/ga_gdr/alpha~{}/lr~1e-05/epochs~1/loss~faithful"
    paths = [_eval(tmp_path, "target", *target.values()), _eval(tmp_path, "retrain", 0.0, 0.1, 1.0)]
    paths += [_eval(tmp_path, arm.format(f"{a:g}"), *s.values()) for a, s in grid.items()]
    table = retention(long_metrics(paths, ReportConfig())).set_index("alpha").retention
    sel = select_alpha(grid, target, 0.5)
    assert {g["alpha"]: g["forget_retention"] for g in sel["grid"]} == pytest.approx({1.0: table["1"], 2.0: table["2"]})
    assert table["1"] == pytest.approx(0.6 / 0.8) and table["2"] == pytest.approx(0.2 / 0.8)
    assert sel["alpha"] == 2.0


def test_atomic_file_keeps_the_old_output_when_the_writer_fails(tmp_path):
    out = tmp_path / "t.csv"
    runtime.write_text_atomic(out, "old\n")
    with pytest.raises(RuntimeError):
        with runtime.atomic_file(out) as tmp:
            assert tmp.suffix == ".csv" and tmp.parent == out.parent
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_privleak_against_a_fixed_reference_auc_is_recorded_in_the_summary(tmp_path):
    from qunlearn.report.tables import summary

    paths = [_eval(tmp_path, "target", 0.9, 0.9, 1.0, 0.1), _eval(tmp_path, "retrain", 0.0, 0.1, 1.0, 0.6)]
    model = ReportConfig()
    fixed = ReportConfig(privleak_reference_auc={"d": 0.4772})
    for cfg, ref in ((model, 0.6), (fixed, 0.4772)):
        df = long_metrics(paths, cfg)
        target = df[(df.model == "target") & (df.metric == "M3_PrivLeak")].value.item()
        assert target == pytest.approx((0.1 - ref) / ref * 100)
        recorded = summary(df, retention(df), cfg)["d"]["privleak_reference"]
        assert recorded["auc"] == pytest.approx(ref)
    assert summary(df, retention(df), fixed)["d"]["privleak_reference"]["source"] == "fixed"


def test_table1_gains_the_utility_columns_only_where_evaluations_have_them(tmp_path):
    from qunlearn.report.tables import table1

    plain = [_eval(tmp_path, "target", 0.9, 0.9, 1.0), _eval(tmp_path, "retrain", 0.0, 0.1, 1.0)]
    df = long_metrics(plain, ReportConfig())
    assert list(table1(df, ["fp32"]).columns) == [
        "dataset", "row", "scheme", "M1_VerbMem_f", "M2_KnowMem_f", "M3_PrivLeak", "M4_KnowMem_r"
    ]  # fmt: skip
    assert not df.metric.str.startswith("U_").any()
    util = {"util_gen": 0.5, "util_tru_mc1": 0.25, "util_tru_mc2": 0.4, "util_fac_em": 0.1, "util_fac_f1": 0.2}
    path = tmp_path / "results/d/eval/target/fp32.json"
    scores = runtime.read_json(path)["metrics"]
    runtime.write_json_atomic(path, {"metrics": {**scores, **util, "util_flu": 6.5}})
    t = table1(long_metrics(plain, ReportConfig()), ["fp32"]).set_index("row")
    assert list(t.columns[-6:]) == ["U_Gen_MMLU", "U_Tru_MC1", "U_Tru_MC2", "U_Fac_EM", "U_Fac_F1", "U_Flu_Entropy"]
    assert t.loc["Target", "U_Gen_MMLU"] == 50.0 and t.loc["Target", "U_Flu_Entropy"] == 6.5  # Flu in bits, x1
