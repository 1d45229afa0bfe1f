# The experiment object, wildcard constraints and the helpers the rules share.
# Every output path and model id comes from src/qunlearn/paths.py (the one path grammar; docs
# "Paths and model ids"); every planning answer from EXP, the qunlearn.experiment.Experiment built
# once from the validated config (the tests build the same object).
# Logs: logs/<rule>/<same wildcards>.log; benchmarks: benchmarks/<rule>/<same wildcards>.tsv.

import json
from pathlib import Path

from qunlearn import paths
from qunlearn.config import LOSS_VARIANTS, ConfigError
from qunlearn.experiment import Experiment

try:
    EXP = Experiment(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

SCRIPTS = str(Path(workflow.basedir) / "workflow" / "scripts")
CONDA_ENV = str(Path(workflow.basedir) / "workflow" / "envs" / "qunlearn.yaml")
SEED = EXP.seed
THREADS = EXP.threads


def _alt(values):
    return "|".join(sorted({str(v).replace(".", r"\.") for v in values})) or "NONE"


wildcard_constraints:
    dataset=_alt(EXP.datasets),
    base=_alt(paths.BASES),
    method=_alt(EXP.unlearn.methods),
    alpha=rf"[0-9.e+-]+|{paths.SELECTED}",
    lr=r"[0-9.e+-]+",
    epochs=r"[0-9]+",
    loss=_alt(LOSS_VARIANTS),
    scheme=_alt(EXP.schemes),
    model_id=paths.MODEL_ID_REGEX,


def as_json(obj):
    """Params are canonical JSON strings: a job reruns exactly when its own slice changes."""
    return json.dumps(obj, sort_keys=True)


def arm_of(w):
    return paths.Arm(w.dataset, w.method, w.alpha, w.lr, w.epochs, w.loss)


TABLES = ["metrics.csv", "table1.csv", "table1.md", "table1.tex", "retention.csv",
          "retention.md", "retention.tex", "summary.json", *STUDY_TABLE_FILES]
FIGURES = ["m1_m2_by_scheme.png", "m1_m2_by_scheme.pdf", *STUDY_FIGURE_FILES]


# paper/: generated LaTeX sources and DVC's metrics/plot file (workflow/rules/paper.smk)
PAPER_SOURCES = ["paper/macros.tex", "paper/tables.tex", "paper/figures.tex", "paper/metrics.json",
                 "paper/retention_by_scheme.csv"]


# Quantizer tables and figures (made by aggregate_quant in workflow/rules/report_quant.smk);
# table2_3_gptq_awq = the paper's Tables 2/3 (GPTQ and AWQ 4-bit); retention_by_bits = retention per
# scheme with its bits (the reviewers' bits plot as a table); weight_change = the rebuttal's
# cosine / changed-code analysis; the figures plot retention and changed codes against bits.
QUANT_TABLES = [f"{stem}.{ext}" for stem in ("table2_3_gptq_awq", "retention_by_bits", "weight_change")
                for ext in ("csv", "md", "tex")]
QUANT_FIGURES = [f"{stem}.{ext}" for stem in ("retention_vs_bits", "codes_changed_vs_bits")
                 for ext in ("png", "pdf")]


def paper_outputs():
    return ([f"paper/tables/{t}" for t in TABLES + QUANT_TABLES]
            + [f"paper/figures/{f}" for f in FIGURES + QUANT_FIGURES] + PAPER_SOURCES)


# `snakemake --report report.html`: captions are workflow/report/<kind>/<stem>.rst (or default.rst)
REPORT_CAPTIONS = Path(workflow.basedir) / "workflow" / "report"


def report_caption(kind, name):
    path = REPORT_CAPTIONS / kind / f"{Path(name).stem}.rst"
    return str(path if path.is_file() else REPORT_CAPTIONS / kind / "default.rst")


def report_table(path):
    name = Path(path).name
    return report(path, caption=report_caption("tables", name), category="3. Tables",
                  subcategory=Path(name).stem, labels={"table": Path(name).stem, "format": Path(name).suffix[1:]})


def report_figure(path):
    name = Path(path).name
    return report(path, caption=report_caption("figures", name), category="4. Figures",
                  subcategory=Path(name).stem, labels={"figure": Path(name).stem, "format": Path(name).suffix[1:]})
