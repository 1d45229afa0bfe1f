from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import release

with job_logging(snakemake.log[0]):
    release(snakemake.input.trained, snakemake.output[0], param(snakemake, "release"))
