# qunlearn: does LLM unlearning survive weight quantization?  (Zhang et al., ICLR 2025)
# The DAG: data -> target/retrain -> release -> [prepare_method] -> unlearn (method x alpha x lr x epochs
#          x loss, alpha grid -> select_alpha) -> [attack (relearn, prune, noise, ...)] -> [quantize (GPTQ/AWQ)]
#          -> evaluate (x scheme), analysis (weight change)
#          -> aggregate tables, figures -> paper/ (snakemake paper: also paper/main.pdf)
# Paths and model ids: src/qunlearn/paths.py (docs/guide/paths.md); planning: src/qunlearn/experiment.py.

from pathlib import Path

from snakemake.utils import min_version

from qunlearn.config import ConfigError
from qunlearn.configfile import check_config_files, validate_config

min_version("9.0")


# The embedded default, unless the user passes --configfile: then that file alone is the config
# (Snakemake would otherwise deep-merge it into config.yaml, keeping e.g. the default's methods).
# --config KEY=VALUE still overrides either. Every config file is re-read by qunlearn.configfile
# (Snakemake's loader keeps the last of two equal keys and names no file or line in its errors),
# and the schema check prints one line (the key, what is wrong, what is allowed).
try:
    check_config_files(workflow.overwrite_configfiles or ["config.yaml"])
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


try:
    validate_config(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pretrained.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/unlearn.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/report_quant.smk"
include: "workflow/rules/report_attacks.smk"
include: "workflow/rules/paper.smk"


report: "workflow/report/workflow.rst"


# A job killed with kill -9 (or a lost node) leaves its temporary output sibling behind
# (.<name>.tmp-<host>-<pid>, runtime.atomic_dir/atomic_file); remove those of this host whose process
# is gone before any job runs. A rerun of the killed job removes its own in any case.
onstart:
    from qunlearn.runtime import sweep_stale_temps

    for _root in ("results", "paper"):
        for _p in sweep_stale_temps(_root):
            print(f"removed {_p} (the temporary output of a killed job)")


rule all:
    default_target: True
    input:
        paper_outputs(),
        EXP.deployment_eval_files(),
