# Helpers, wildcard constraints and the one path grammar of every output:
#
#   results/{dataset}/data/                                         MUSE-format splits + tokenizer
#   results/{dataset}/models/trained/{base}/                        base = target | retrain, as trained
#   results/{dataset}/models/pretrained/{base}/                     or taken as published (fetch_model)
#   results/{dataset}/models/{base}/                                as released (optionally grid-snapped)
#   results/{dataset}/models/unlearn/{method}/alpha~{alpha}/lr~{lr}/epochs~{epochs}/loss~{loss}/
#                                                                   alpha = a number | selected
#   results/{dataset}/selection/{method}.json                       the alpha picked from the grid
#   results/{dataset}/eval/{model_id}/{scheme}.json                 model_id = target | retrain |
#                                        unlearn/{method}/alpha~{alpha}/lr~{lr}/epochs~{epochs}/loss~{loss}
#   results/{dataset}/quant/{model_id}/{scheme}/                    calibrated schemes only (GPTQ, AWQ): dense
#                                                                   deployed weights + quant_codes.safetensors
#   results/{dataset}/analysis/{model_id}/{scheme}.json             headline arm vs the released target
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
from qunlearn.report_files import STUDY_FIGURE_FILES, STUDY_TABLE_FILES
from qunlearn.paper import rst_caption
from qunlearn.config import ConfigError, EvalConfig, ModelConfig, ReportConfig, TrainConfig

try:
    plan.check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

RESULTS = "results"
ARM = "{method}/alpha~{alpha}/lr~{lr}/epochs~{epochs}/loss~{loss}"  # an unlearned model's path
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
    alpha=r"[0-9.e+-]+|selected",
    lr=r"[0-9.e+-]+",
    epochs=r"[0-9]+",
    loss="faithful|paper_code",
    scheme=_alt(config["quantize"]["schemes"]),
    model_id=r"target|retrain|unlearn/[^/]+/alpha~[^/]+/lr~[^/]+/epochs~[^/]+/loss~[^/]+",


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


def selection_file(dataset, method):
    """The alpha selection an arm of (dataset, method) with alpha 'selected' reads."""
    ds, m = plan.selection_source(config, dataset, method)
    return f"{RESULTS}/{ds}/selection/{m}.json"


def arm_of(w):
    return plan.Arm(w.dataset, w.method, w.alpha, w.lr, w.epochs, w.loss)


def unlearn_inputs(w):
    inputs = {"base": f"{RESULTS}/{w.dataset}/models/target", "data": data_dir(w.dataset)}
    if w.alpha == plan.SELECTED:
        inputs["selection"] = selection_file(w.dataset, w.method)
        for twin in plan.grid_twins(config, arm_of(w)):  # the grid arm it may copy (plan.grid_twins)
            inputs[f"twin_{twin.alpha}"] = model_dir(w.dataset, twin.model_id)
    return inputs


def selection_inputs(w):
    """The grid's evals at the deciding scheme (none when a single alpha is configured)."""
    alphas = plan.grid_alphas(config, w.method)
    if not alphas:
        return {}
    scheme = plan.alpha_selection(config).schemes[0]
    inputs = {f"alpha_{i}": f"{RESULTS}/{w.dataset}/eval/{arm.model_id}/{scheme}.json"
              for i, arm in enumerate(plan.grid_arms(config, w.dataset, w.method))}
    inputs["target"] = f"{RESULTS}/{w.dataset}/eval/target/{scheme}.json"
    return inputs


def selection_map():
    """"dataset/method" -> the selection file of every arm whose alpha is 'selected'."""
    return {f"{a.dataset}/{a.method}": selection_file(a.dataset, a.method)
            for a in plan.unlearn_jobs(config) if a.alpha == plan.SELECTED}


def selection_files():
    return sorted(set(selection_map().values()))


# Every (dataset, model_id, scheme) evaluation, computed once per parse: input and param functions
# of many jobs ask which schemes a model gets, and plan.evaluations walks the whole grid.
EVALUATIONS = plan.evaluations(config)
MODEL_SCHEMES = {}
for _ds, _mid, _scheme in EVALUATIONS:
    MODEL_SCHEMES.setdefault((_ds, _mid), []).append(_scheme)


def model_schemes(dataset, model_id):
    """The schemes one model is evaluated at (plan.model_schemes, from the parse-time table)."""
    return MODEL_SCHEMES.get((dataset, model_id), [])


def eval_outputs():
    return [f"{RESULTS}/{ds}/eval/{mid}/{scheme}.json" for ds, mid, scheme in EVALUATIONS]


def quant_dir(dataset, model_id, scheme):
    return f"{RESULTS}/{dataset}/quant/{model_id}/{scheme}"


def eval_model_input(dataset, model_id, scheme):
    """The checkpoint evaluate loads (calibrated schemes: the quantize job output; else the model)."""
    if plan.is_calibrated(config, scheme):
        return quant_dir(dataset, model_id, scheme)
    return model_dir(dataset, model_id)


def calibrated_schemes(dataset, model_id):
    return [s for s in model_schemes(dataset, model_id) if plan.is_calibrated(config, s)]


def analysis_inputs(w):
    """The released target, the unlearned model, and both quantized checkpoints per calibrated scheme."""
    inputs = {"target": model_dir(w.dataset, "target"), "unlearned": model_dir(w.dataset, w.model_id)}
    for s in calibrated_schemes(w.dataset, w.model_id):
        inputs[f"target_{s}"] = quant_dir(w.dataset, "target", s)
        inputs[f"unlearned_{s}"] = quant_dir(w.dataset, w.model_id, s)
    return inputs


def analysis_outputs():
    """One directory per analysed model (plan.analysis_model_ids); it holds <scheme>.json per scheme."""
    return [f"{RESULTS}/{ds}/analysis/{mid}" for ds in config["datasets"] for mid in plan.analysis_model_ids(config, ds)]


# --- report: every table and figure is declared once, in qunlearn.report.catalog (stem, caption,
# formats, rule, inputs); the rules below take their file lists and captions from it.
from qunlearn.report import catalog


def paper_outputs():
    return catalog.paper_files()


def report_item(item, fmt):
    """A table or figure as a `snakemake --report` item, captioned by its catalog caption file."""
    return report(item.path(fmt), caption=item.caption_file,
                  category="3. Tables" if item.kind == "table" else "4. Figures",
                  subcategory=item.stem, labels={item.kind: item.stem, "format": fmt})


def rule_outputs(rule):
    """The named outputs of a report rule (`<stem>_<format>`; its job looks files up by these names)."""
    return {item.key(fmt): report_item(item, fmt) for item in catalog.items(rule) for fmt in item.formats}
