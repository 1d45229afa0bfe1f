from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.deploy import write_deployment
from qunlearn.jobs import job_logging

with job_logging(snakemake.log[0]):
    write_deployment(snakemake.input.model, snakemake.output[0], snakemake.params.mode, seed=snakemake.params.seed)
