# Helpers, wildcard constraints and the one path grammar of every output:
#
#   results/{dataset}/data/                                         MUSE-format splits + tokenizer
#   results/{dataset}/models/trained/{base}/                        base = target | retrain, as trained
#   results/{dataset}/models/pretrained/{base}/                     or taken as published (fetch_model)
#   results/{dataset}/models/{base}/                                as released (optionally grid-snapped)
#   results/{dataset}/models/unlearn/{method}/alpha~{alpha}/lr~{lr}/
#   results/{dataset}/eval/{model_id}/{scheme}.json                 model_id = target | retrain |
#                                                                   unlearn/{method}/alpha~{alpha}/lr~{lr}
#   results/tables/*.{csv,md,tex}, results/figures/*.{png,pdf}  ->  paper/tables/, paper/figures/
#
# Every model/data directory holds meta.json; every eval JSON embeds its "meta".
# Logs: logs/<rule>/<same wildcards>.log; benchmarks: benchmarks/<rule>/<same wildcards>.tsv.

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # a source checkout works without install

from qunlearn import plan
from qunlearn.config import ConfigError, EvalConfig, ModelConfig, ReportConfig, TrainConfig

try:
    plan.check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

RESULTS = "results"
SCRIPTS = str(Path(workflow.basedir) / "workflow" / "scripts")
CONDA_ENV = str(Path(workflow.basedir) / "workflow" / "envs" / "qunlearn.yaml")
SEED = config.get("seed", 0)
THREADS = config.get("threads", 1)
REPORT = ReportConfig(**plan.stage_slice(config, "report", ReportConfig))


def _alt(values):
    return "|".join(sorted({str(v).replace(".", r"\.") for v in values})) or "NONE"


wildcard_constraints:
    dataset=_alt(config["datasets"]),
    base="target|retrain",
    method=_alt(config["unlearn"]["methods"]),
    alpha=r"[0-9.e+-]+",
    lr=r"[0-9.e+-]+",
    scheme=_alt(config["quantize"]["schemes"]),
    model_id=r"target|retrain|unlearn/[^/]+/alpha~[^/]+/lr~[^/]+",


def as_json(obj):
    """Params are canonical JSON strings: a job reruns exactly when its own slice changes."""
    return json.dumps(obj, sort_keys=True)


def data_dir(dataset):
    return f"{RESULTS}/{plan.dataset_owner(config, dataset)}/data"


def trained_dir(dataset, base):
    owner = plan.dataset_owner(config, dataset)
    if plan.pretrained_base(config, dataset, base):  # taken as published: fetch_model, not train_base
        return f"{RESULTS}/{owner}/models/pretrained/{base}"
    return f"{RESULTS}/{owner}/models/trained/{base}"


def model_dir(dataset, model_id):
    return f"{RESULTS}/{dataset}/models/{model_id}"


def eval_outputs():
    return [
        f"{RESULTS}/{ds}/eval/{mid}/{scheme}.json"
        for ds in config["datasets"]
        for mid in plan.model_ids(config, ds)
        for scheme in config["quantize"]["schemes"]
    ]


TABLES = ["metrics.csv", "table1.csv", "table1.md", "table1.tex", "retention.csv",
          "retention.md", "retention.tex", "summary.json"]
FIGURES = ["m1_m2_by_scheme.png", "m1_m2_by_scheme.pdf"]


def paper_outputs():
    return [f"paper/tables/{t}" for t in TABLES] + [f"paper/figures/{f}" for f in FIGURES]
