"""Every table and figure, declared once: its stem, kind, formats, the rule that makes it, what it is
drawn from, and its caption.

The workflow imports this module at parse time (output lists, report captions, paper/ includes), so
it imports neither pandas nor torch (tests/test_report_catalog.py checks it).

Captions live in ``captions/<kind>/<stem>.rst`` beside this module, one file per item: Snakemake's
``report(..., caption=...)`` needs a file, and the jobs (LaTeX captions) find the package wherever
it is installed, which a file under workflow/ would not guarantee. The first paragraph is the caption
(the LaTeX tables' and figures' too); later paragraphs are extra notes for the HTML report. Caption
files are plain text that reads the same as rst (no inline markup).

A rule's outputs are named ``<stem>_<format>`` (:func:`key`); jobs look their files up by that name.

A conditional item (``requires``: the name of a MethodSpec trait) is made only when a configured
method's spec has that trait (``Experiment.report_conditions()``): the functions below take the
conditions that hold as ``present`` (None: every item, the catalog as declared).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .. import paths

CAPTIONS = Path(__file__).parent / "captions"
TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class Item:
    """A table or figure. ``inputs``: what it is drawn from, as the tables it reads (``stem.format``)
    or the rule's other inputs (``evals``, ``selections``, ``analyses``). Tables: ``label`` is the
    LaTeX label; ``csv_float`` the csv float format; ``text_float`` the .md/.tex one;
    ``requires`` a MethodSpec trait some configured method must have for the item to be made ("":
    always made)."""

    kind: str  # table | figure
    stem: str
    rule: str
    formats: tuple[str, ...]
    inputs: tuple[str, ...]
    label: str = ""
    csv_float: str = "%.6g"
    text_float: str = "{:.2f}"
    requires: str = ""

    def key(self, fmt: str) -> str:
        return key(self.stem, fmt)

    def files(self) -> list[str]:
        return [f"{self.stem}.{fmt}" for fmt in self.formats]

    def path(self, fmt: str) -> str:
        name = f"{self.stem}.{fmt}"
        return paths.table(name) if self.kind == "table" else paths.figure(name)

    def paper_path(self, fmt: str) -> str:
        pattern = paths.PAPER_TABLE if self.kind == "table" else paths.PAPER_FIGURE
        return pattern.format(name=f"{self.stem}.{fmt}")

    @property
    def caption_file(self) -> str:
        return str(CAPTIONS / f"{self.kind}s" / f"{self.stem}.rst")

    @property
    def caption(self) -> str:
        """The first paragraph of the caption file, on one line."""
        text = Path(self.caption_file).read_text(encoding="utf-8").strip().split("\n\n")[0]
        return " ".join(text.split())


HEADLINE_INPUTS = ("evals", "selections")


def _study(stem: str) -> Item:
    return Item("table", stem, "aggregate", TABLE_FORMATS, HEADLINE_INPUTS, f"tab:{stem}")


ITEMS = (
    # rule aggregate: the headline tables (paper Table 1) and the studies (Tables 3-4, the ablations)
    Item("table", "metrics", "aggregate", ("csv",), HEADLINE_INPUTS),
    Item("table", "table1", "aggregate", TABLE_FORMATS, HEADLINE_INPUTS, "tab:table1", "%.4g", "{:.1f}"),
    Item("table", "retention", "aggregate", TABLE_FORMATS, HEADLINE_INPUTS, "tab:retention"),
    Item("table", "summary", "aggregate", ("json",), HEADLINE_INPUTS),
    Item("table", "intervals", "aggregate", ("csv", "md"), HEADLINE_INPUTS, csv_float="%.6g", text_float="{:.3g}"),
    _study("table4_alpha_grid"),
    _study("table3_sure"),
    _study("lr_sweep"),
    _study("epochs_ablation"),
    _study("loss_variants"),
    _study("rmu"),  # rebuttal (BOOKS); no rows until a method of the RMU family is configured
    # rule aggregate_attacks: the recovery attacks (no rows when no attack is configured)
    Item("table", "recovery", "aggregate_attacks", TABLE_FORMATS, ("evals",), "tab:recovery", "%.6g", "{:.2f}"),
    Item(
        "table",
        "robust_retention",
        "aggregate_attacks",
        TABLE_FORMATS,
        ("evals",),
        "tab:robust_retention",
        "%.6g",
        "{:.2f}",
    ),
    # rule figures: from the tables and the plot settings only
    Item("figure", "m1_m2_by_scheme", "figures", FIGURE_FORMATS, ("metrics.csv", "intervals.csv")),
    Item("figure", "lr_sweep", "figures", FIGURE_FORMATS, ("metrics.csv", "lr_sweep.csv")),
    Item("figure", "recovery_curves", "figures", FIGURE_FORMATS, ("recovery.csv",)),
    # rule aggregate_quant: the quantizer tables (paper Tables 2/3, the reviewers' bits plot, the
    # rebuttal's weight change) and their figures
    Item(
        "table",
        "table2_3_gptq_awq",
        "aggregate_quant",
        TABLE_FORMATS,
        ("metrics.csv",),
        "tab:gptq_awq",
        "%.4g",
        "{:.1f}",
    ),
    Item("table", "retention_by_bits", "aggregate_quant", TABLE_FORMATS, ("metrics.csv",), "tab:retention_bits"),
    Item(
        "table",
        "weight_change",
        "aggregate_quant",
        TABLE_FORMATS,
        ("metrics.csv", "analyses"),
        "tab:weight_change",
        "%.6g",
        "{:.3f}",
    ),
    # the method zoo (issue 13): retention at 32/8/4 bits, utility, codes changed, robust worst case
    Item(
        "table",
        "zoo",
        "aggregate_quant",
        TABLE_FORMATS,
        ("metrics.csv", "analyses", "robust_retention.csv"),
        "tab:zoo",
        "%.6g",
        "{:.2f}",
    ),
    # quantization-aware unlearning against SURE and a larger lr at equal utility (issue 13): only
    # in a config with a quantization-aware method
    Item(
        "table",
        "qa_comparison",
        "aggregate_quant",
        TABLE_FORMATS,
        ("metrics.csv", "robust_retention.csv"),
        "tab:qa_comparison",
        "%.6g",
        "{:.2f}",
        requires="quantization_aware",
    ),
    # the model-size study (issue 17): retention and codes changed per size, snapped and not, and
    # the size where the natural regime begins (no rows unless datasets have different models)
    Item(
        "table", "scale", "aggregate_quant", TABLE_FORMATS, ("metrics.csv", "analyses"), "tab:scale", "%.6g", "{:.2f}"
    ),
    Item(
        "table", "scale_onset", "aggregate_quant", TABLE_FORMATS, ("metrics.csv",), "tab:scale_onset", "%.6g", "{:.2f}"
    ),
    Item("figure", "retention_vs_bits", "aggregate_quant", FIGURE_FORMATS, ("metrics.csv", "intervals.csv")),
    Item("figure", "codes_changed_vs_bits", "aggregate_quant", FIGURE_FORMATS, ("metrics.csv", "analyses")),
    Item("figure", "retention_vs_size", "aggregate_quant", FIGURE_FORMATS, ("metrics.csv", "analyses")),
)
RULES = tuple(dict.fromkeys(i.rule for i in ITEMS))
# the conditions conditional items require (MethodSpec traits)
CONDITIONS = tuple(dict.fromkeys(i.requires for i in ITEMS if i.requires))
# paper/'s generated sources (rules paper_numbers, paper_includes)
PAPER_SOURCES = {
    "macros": "paper/macros.tex",
    "tables": "paper/tables.tex",
    "figures": "paper/figures.tex",
    "metrics": "paper/metrics.json",
    "plot": "paper/retention_by_scheme.csv",
}


def key(stem: str, fmt: str) -> str:
    """The name of a table's or figure's file among its rule's outputs (a Python identifier)."""
    return f"{stem}_{fmt}"


def items(rule: str | None = None, kind: str | None = None, present: Collection[str] | None = None) -> list[Item]:
    """The items of ``rule`` and ``kind`` (None: any); ``present``: the conditions that hold (a
    conditional item whose ``requires`` is not among them is left out; None: every item)."""
    return [
        i
        for i in ITEMS
        if rule in (None, i.rule)
        and kind in (None, i.kind)
        and (present is None or not i.requires or i.requires in present)
    ]


def get(kind: str, stem: str) -> Item:
    for i in ITEMS:
        if (i.kind, i.stem) == (kind, stem):
            return i
    raise KeyError(f"no {kind} {stem!r} in the report catalog")


def outputs(rule: str, present: Collection[str] | None = None) -> dict[str, str]:
    """The named outputs of ``rule``: ``<stem>_<format>`` -> path under results/."""
    return {i.key(fmt): i.path(fmt) for i in items(rule, present=present) for fmt in i.formats}


def table_inputs(rule: str, present: Collection[str] | None = None) -> dict[str, str]:
    """The tables the items of ``rule`` are drawn from, named like outputs (``metrics_csv``)."""
    names = dict.fromkeys(n for i in items(rule, present=present) for n in i.inputs if "." in n)
    return {key(*n.split(".")): paths.table(n) for n in names}


def paper_copies(*rules: str, present: Collection[str] | None = None) -> dict[str, str]:
    """The outputs of ``rules`` -> their copies under paper/ (rules paper_assets, paper_quant)."""
    return {i.path(fmt): i.paper_path(fmt) for rule in rules for i in items(rule, present=present) for fmt in i.formats}


def paper_files(present: Collection[str] | None = None) -> list[str]:
    """Everything paper/main.tex needs: the copied tables and figures and the generated sources."""
    return [i.paper_path(fmt) for i in items(present=present) for fmt in i.formats] + list(PAPER_SOURCES.values())


def files(kind: str, present: Collection[str] | None = None) -> list[str]:
    """The file names of every table or figure, in declaration order (paper/tables.tex's order)."""
    return [f for i in items(kind=kind, present=present) for f in i.files()]


def captions(kind: str, present: Collection[str] | None = None) -> dict[str, str]:
    """File name -> caption of every table or figure file."""
    return {f: i.caption for i in items(kind=kind, present=present) for f in i.files()}
