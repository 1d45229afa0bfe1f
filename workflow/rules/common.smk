# Helpers, wildcard constraints and the one path grammar of every output:
#
#   results/{dataset}/data/                                         MUSE-format splits + tokenizer
#   results/{dataset}/models/trained/{base}/                        base = target | retrain, as trained
#   results/{dataset}/models/{base}/                                as released (optionally grid-snapped)
#   results/{dataset}/models/unlearn/{method}/alpha~{alpha}/lr~{lr}/
#   results/{dataset}/quant/{model_id}/{scheme}/                    calibrated schemes only (GPTQ, AWQ): dense
#                                                                   deployed weights + quant_codes.safetensors
#   results/{dataset}/eval/{model_id}/{scheme}.json                 model_id = target | retrain |
#                                                                   unlearn/{method}/alpha~{alpha}/lr~{lr}
#   results/{dataset}/analysis/{model_id}/{scheme}.json             unlearned model_id vs the released target
#                                                                   (one job per model_id writes every scheme)
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
    return f"{RESULTS}/{plan.dataset_owner(config, dataset)}/models/trained/{base}"


def model_dir(dataset, model_id):
    return f"{RESULTS}/{dataset}/models/{model_id}"


def quant_dir(dataset, model_id, scheme):
    return f"{RESULTS}/{dataset}/quant/{model_id}/{scheme}"


def eval_model_input(dataset, model_id, scheme):
    """The checkpoint evaluate loads (calibrated schemes: the quantize job output; else the model)."""
    if plan.is_calibrated(config, scheme):
        return quant_dir(dataset, model_id, scheme)
    return model_dir(dataset, model_id)


def eval_outputs():
    return [
        f"{RESULTS}/{ds}/eval/{mid}/{scheme}.json"
        for ds in config["datasets"]
        for mid in plan.model_ids(config, ds)
        for scheme in plan.model_schemes(config, ds, mid)
    ]


def calibrated_schemes(dataset, model_id):
    return [s for s in plan.model_schemes(config, dataset, model_id) if plan.is_calibrated(config, s)]


def analysis_inputs(w):
    """The released target, the unlearned model, and both quantized checkpoints per calibrated scheme."""
    inputs = {"target": model_dir(w.dataset, "target"), "unlearned": model_dir(w.dataset, w.model_id)}
    for s in calibrated_schemes(w.dataset, w.model_id):
        inputs[f"target_{s}"] = quant_dir(w.dataset, "target", s)
        inputs[f"unlearned_{s}"] = quant_dir(w.dataset, w.model_id, s)
    return inputs


def analysis_outputs():
    """One directory per unlearned model; it holds <scheme>.json for every scheme of its dataset."""
    return [f"{RESULTS}/{ds}/analysis/{mid}" for ds in config["datasets"] for mid in plan.unlearned_model_ids(config, ds)]


TABLES = ["metrics.csv", "table1.csv", "table1.md", "table1.tex", "retention.csv",
          "retention.md", "retention.tex", "summary.json"]
FIGURES = ["m1_m2_by_scheme.png", "m1_m2_by_scheme.pdf"]


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
            + [f"paper/figures/{f}" for f in FIGURES + QUANT_FIGURES])
