from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.paper import write_numbers

with job_logging(snakemake.log[0]):
    write_numbers(
        snakemake.input.summary,
        snakemake.input.retention,
        param(snakemake, "scheme_bits"),
        snakemake.output.macros,
        snakemake.output.metrics,
        snakemake.output.plot,
        snakemake.input.robust,
    )
