from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.external import fetch_external
from qunlearn.jobs import job_logging, param

with job_logging(snakemake.log[0]):
    fetch_external(
        param(snakemake, "model"),
        snakemake.wildcards.dataset,
        snakemake.wildcards.external,
        snakemake.input.target,
        snakemake.input.data,
        snakemake.output[0],
    )
