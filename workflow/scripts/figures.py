from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report import figures_from_metrics

with job_logging(snakemake.log[0]):
    figures_from_metrics(snakemake.input.metrics, param(snakemake, "plot"), snakemake.output.figures,
                         lr_sweep_csv=snakemake.input.lr_sweep)
