from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import prepare_data

with job_logging(snakemake.log[0]):
    prepare_data(param(snakemake, "dataset"), snakemake.output[0], name=snakemake.wildcards.dataset)
