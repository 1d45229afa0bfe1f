from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging
from qunlearn.report.paper import build_pdf

with job_logging(snakemake.log[0]):
    build_pdf(snakemake.input.main, snakemake.output[0])
