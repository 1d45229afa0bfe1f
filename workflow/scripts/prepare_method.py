from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import prepare_method

with job_logging(snakemake.log[0]):
    prepare_method(
        snakemake.input.base,
        snakemake.input.data,
        snakemake.output[0],
        param(snakemake, "prepare"),
        max_length=snakemake.params.max_length,
        seed=int(snakemake.wildcards.seed),
        threads=snakemake.threads,
    )
