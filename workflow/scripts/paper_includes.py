from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.report.paper import write_includes

with job_logging(snakemake.log[0]):
    write_includes(
        param(snakemake, "tables"), param(snakemake, "figures"), snakemake.output.tables, snakemake.output.figures
    )
