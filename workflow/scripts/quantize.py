from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Snakemake injects the `snakemake` object when it runs the script
    from snakemake.script import snakemake

from qunlearn.jobs import job_logging, param
from qunlearn.stages import quantize_checkpoint

with job_logging(snakemake.log[0]):
    quantize_checkpoint(
        snakemake.input.model,
        snakemake.input.data,
        snakemake.output[0],
        param(snakemake, "scheme"),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        scheme_name=snakemake.wildcards.scheme,
    )
