from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.stages import draw_figures

with job_logging(snakemake.log[0]):
    draw_figures(
        snakemake.input.metrics_csv,
        snakemake.input.lr_sweep_csv,
        param(snakemake, "plot"),
        dict(snakemake.output.items()),
        snakemake.input.intervals_csv,
        snakemake.input.recovery_csv,
    )
