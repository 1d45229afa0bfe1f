from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.stages import aggregate_quant

with job_logging(snakemake.log[0]):
    aggregate_quant(
        snakemake.input.metrics_csv,
        snakemake.input.analyses,
        param(snakemake, "report"),
        param(snakemake, "schemes"),
        dict(snakemake.output.items()),
        snakemake.input.intervals_csv,
        snakemake.input.get("robust_retention_csv"),
        param(snakemake, "qa"),
        param(snakemake, "scale"),
    )
