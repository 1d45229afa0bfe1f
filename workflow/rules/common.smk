# The experiment object, wildcard constraints and the helpers the rules share.
# Every output path and model id comes from src/qunlearn/paths.py (the one path grammar; docs
# "Paths and model ids"); every planning answer from EXP, the qunlearn.experiment.Experiment built
# once from the validated config (the tests build the same object).
# Logs: logs/<rule>/<same wildcards>.log; benchmarks: benchmarks/<rule>/<same wildcards>.tsv.

import json
from pathlib import Path

from qunlearn import deploy, paths
from qunlearn.config import LOSS_VARIANTS, ConfigError
from qunlearn.experiment import Experiment
from qunlearn.report import catalog

try:
    EXP = Experiment(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
# the conditions of the report catalog's conditional items that hold (e.g. a quantization-aware
# method: the qa_comparison table); the report rules make only those items
REPORT_CONDITIONS = EXP.report_conditions()

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
    seed=r"[0-9]+",
    scheme=_alt(EXP.schemes),
    model_id=paths.MODEL_ID_REGEX,
    attack=_alt(EXP.attacks.runs),
    point=paths.POINT_REGEX,
    parent=paths.MODEL_ID_REGEX,
    mode=_alt(deploy.MODES),


def as_json(obj):
    """Params are canonical JSON strings: a job reruns exactly when its own slice changes."""
    return json.dumps(obj, sort_keys=True)


def derived_of(w):
    """The derived model id of an attack job's wildcards."""
    return paths.DERIVED.format(attack=w.attack, point=w.point, parent=w.parent)


DEPLOY_PATTERN = deploy.PATTERN


def deploy_of(w):
    """The derived model id of a deploy job's wildcards."""
    return deploy.PATTERN.format(mode=w.mode, parent=w.parent)


def arm_of(w):
    return paths.Arm(w.dataset, w.method, w.alpha, w.lr, w.epochs, w.loss, w.get("seed", ""))


# --- report: every table and figure is declared once, in qunlearn.report.catalog (stem, caption,
# formats, rule, inputs); the report rules take their file lists and captions from it.


def paper_outputs():
    return catalog.paper_files(REPORT_CONDITIONS)


def report_item(item, fmt):
    """A table or figure as a `snakemake --report` item, captioned by its catalog caption file."""
    return report(
        item.path(fmt),
        caption=item.caption_file,
        category="3. Tables" if item.kind == "table" else "4. Figures",
        subcategory=item.stem,
        labels={item.kind: item.stem, "format": fmt},
    )


def rule_outputs(rule):
    """The named outputs of a report rule (`<stem>_<format>`; its job looks files up by these names)."""
    return {
        item.key(fmt): report_item(item, fmt)
        for item in catalog.items(rule, present=REPORT_CONDITIONS)
        for fmt in item.formats
    }
